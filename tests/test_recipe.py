"""How a sweep's plugins were loaded is recorded once (PluginRecipe, in the manifest) and
loaded again from it by the report, a resumed sweep and the Ray workers."""

import json
import pickle

from lrlab.plugins import load_plugins
from lrlab.recipe import PluginRecipe, recipe_of
from lrlab.report import write_report
from lrlab.sweep import run_sweep

MODEL_PLUGIN = ("def lrlab_register_models(register):\n    register('{name}', {name})\n\n\n"
                "def {name}(input_shape, num_classes):\n    '''A model.'''\n")
SECTION_PLUGIN = ("import lrlab\n\n\ndef lrlab_report_sections(runs):\n"
                  "    return [lrlab.Section('{title}', '<p>{title}</p>')]\n")
TINY = {"lr": "0.05", "epochs": "1", "augment": "none", "model": "mlp(width=8)",
        "report": False}


class TopLevelPlugin:
    """A plugin class the API registers: importable again by its path."""

    def lrlab_sweep_end(self, runs):
        pass


def test_a_recipe_loads_the_same_plugins_again_after_a_trip_through_json_and_pickle(
        tmp_path, monkeypatch):
    (tmp_path / "recipe_pmod.py").write_text(MODEL_PLUGIN.format(name="from_p"))
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "lrlab_plugins.py").write_text(MODEL_PLUGIN.format(name="from_local"))
    host = load_plugins(["recipe_pmod", "no:builtin.vectorized"], local_dirs=[tmp_path],
                        plugins=[TopLevelPlugin, object()])
    recipe = recipe_of(host)
    assert recipe.modules == ("recipe_pmod",) and "builtin.vectorized" in recipe.blocked
    assert recipe.api == (f"{__name__}:TopLevelPlugin",) and len(recipe.unnamed) == 1
    for again in (PluginRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))),
                  pickle.loads(pickle.dumps(recipe))):
        loaded = again.load()
        assert loaded.registry.names("model") == host.registry.names("model")
        assert {"from_p", "from_local"} <= set(loaded.registry.names("model"))
        assert "TopLevelPlugin" in loaded.info and "vectorized" not in \
            loaded.registry.names("executor")


def test_an_older_manifest_without_a_recipe_still_reloads_its_dash_p_plugins(
        tmp_path, monkeypatch):
    (tmp_path / "old_pmod.py").write_text(SECTION_PLUGIN.format(title="Old section"))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_sweep(out=tmp_path / "r", extra_plugins=["old_pmod"], cwd=tmp_path, **TINY)
    path = result.folder / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["plugin_recipe"]
    path.write_text(json.dumps(manifest))
    assert "Old section" in write_report(result.folder).read_text()


def test_a_resumed_sweep_with_other_plugins_says_so(tmp_path, monkeypatch):
    (tmp_path / "resume_pmod.py").write_text(SECTION_PLUGIN.format(title="Resume"))
    monkeypatch.syspath_prepend(str(tmp_path))
    first = run_sweep(out=tmp_path / "r", cwd=tmp_path, **TINY)
    assert not any("plugins differ" in n for n in first.notes)
    same = run_sweep(out=tmp_path / "r", cwd=tmp_path, **TINY)
    assert same.skipped and not any("plugins differ" in n for n in same.notes)
    other = run_sweep(out=tmp_path / "r", extra_plugins=["resume_pmod"], cwd=tmp_path, **TINY)
    assert other.skipped == same.skipped
    assert any("plugins differ from the stored sweep's (modules)" in n for n in other.notes)


def test_a_recorded_plugin_that_is_gone_can_be_blocked_to_rebuild_the_report(
        tmp_path, monkeypatch):
    (tmp_path / "gone_pmod.py").write_text(SECTION_PLUGIN.format(title="Gone"))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_sweep(out=tmp_path / "r", extra_plugins=["gone_pmod"], cwd=tmp_path, **TINY)
    (tmp_path / "gone_pmod.py").unlink()
    monkeypatch.delitem(__import__("sys").modules, "gone_pmod")
    import pytest

    from lrlab.errors import UsageError

    with pytest.raises(UsageError, match="cannot load plugin 'gone_pmod'"):
        write_report(result.folder)
    assert "Gone" not in write_report(result.folder,
                                      extra_plugins=["no:gone_pmod"]).read_text()
