"""A tiny DOM over the standard library's HTML parser, for tests that read the report."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

VOID = {"img", "meta", "br", "hr", "input", "link", "col", "source", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self, tag: str | None = None):
        for c in self.children:
            if isinstance(c, Node):
                if tag is None or c.tag == tag:
                    yield c
                yield from c.iter(tag)

    def find(self, tag: str | None = None, **attrs: str) -> Node | None:
        return next(self.find_all(tag, **attrs), None)

    def find_all(self, tag: str | None = None, **attrs: str):
        return (n for n in self.iter(tag)
                if all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()))


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_endtag(self, tag):
        node = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(path: Path) -> Node:
    (builder := TreeBuilder()).feed(path.read_text(encoding="utf-8"))
    return builder.root


def table_rows(dom: Node, table_id: str) -> list[Node]:
    table = dom.find("table", id=table_id)
    assert table is not None, f"table #{table_id} missing"
    return list(table.find("tbody").iter("tr"))


def cells(row: Node) -> list[str]:
    return [td.text().strip() for td in row.iter("td")]


def png_size(img: Node) -> tuple[int, int]:
    src = img.attrs["src"]
    assert src.startswith("data:image/png;base64,"), src[:40]
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).size
