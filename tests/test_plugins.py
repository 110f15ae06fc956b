"""Loading plugins: where each comes from (PluginInfo), and the guards that keep a broken
plugin from breaking the core silently: every failure names the plugin."""

from __future__ import annotations

import textwrap

import pytest

import lrlab
from lrlab.plugins import load_plugins
from lrlab.testing import fake_distribution, run_tiny_sweep


def load(*plugins, extra=()):
    return load_plugins(extra, plugins=plugins, use_entry_points=False)


def named(name, **hooks):
    """A plugin object called ``name`` with the given hook functions (no self)."""
    return type(name, (), {"__name__": name, **{k: staticmethod(v) for k, v in hooks.items()}})()


def tiny_model(input_shape, num_classes, *, width: int = 4):
    import torch

    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))


@pytest.fixture
def fake_installed(tmp_path, monkeypatch):
    """A module ``lrlab_fake_plugin`` 'installed' as distribution fake-dist 1.2.3."""
    (tmp_path / "lrlab_fake_plugin.py").write_text(textwrap.dedent('''
        import lrlab

        def fake_tiny(input_shape, num_classes):
            """A fake model."""
            import torch
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))

        @lrlab.hookimpl
        def lrlab_register_models(register):
            register("fake_tiny", fake_tiny)

        def lrlab_run_end(run, result):
            pass
    '''))
    fake_distribution(tmp_path, "fake-dist", {"fake": "lrlab_fake_plugin"}, "1.2.3")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


# -- where plugins come from --------------------------------------------------------------


def test_builtins_are_plugins_with_lrlab_version_and_what_they_register():
    host = load()
    info = host.info["builtin.models"]
    assert (info.source, info.version, info.where) == ("built-in", lrlab.__version__,
                                                       "lrlab.builtin.models")
    assert "model:mlp" in info.registered and info.hooks == []
    assert host.info["builtin.verdicts"].hooks == ["lrlab_diagnose"]
    assert host.registry.get("model", "mlp").plugin == "builtin.models"


def test_entry_point_plugin_shows_name_version_where_and_what(fake_installed):
    host = load_plugins()
    info = host.info["fake"]
    assert (info.source, info.version) == ("entry point", "1.2.3")
    assert info.where == "lrlab_fake_plugin (fake-dist)"
    assert info.registered == ["model:fake_tiny"]
    assert info.hooks == ["lrlab_run_end"]  # unmarked lrlab_* functions are hooks too
    assert info.what == "model:fake_tiny, lrlab_run_end"


def test_entry_point_components_work_in_a_sweep(fake_installed, out):
    result = run_tiny_sweep(out=out, model="fake_tiny")
    assert list(result.runs["error"]) == [""]


def test_p_no_blocks_an_entry_point_and_p_of_a_loaded_module_is_not_a_duplicate(
        fake_installed):
    assert "fake" not in load_plugins(["no:fake"]).info
    host = load_plugins(["lrlab_fake_plugin"])  # the module the entry point loaded
    assert host.info["fake"].source == "entry point"
    assert "lrlab_fake_plugin" not in host.info


def test_p_module_and_local_file_and_api_sources(fake_installed, tmp_path):
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (folder / "lrlab_plugins.py").write_text("def lrlab_sweep_end(runs):\n    pass\n")
    api = named("my-api-plugin", lrlab_run_start=lambda run: None)
    host = load_plugins(["lrlab_fake_plugin", "no:fake"], plugins=[api], local_dirs=[folder],
                        use_entry_points=False)
    by_source = {i.source: i for i in host.info.values()}
    assert by_source["-p"].name == "lrlab_fake_plugin"
    assert by_source["-p"].where.endswith("lrlab_fake_plugin.py")
    assert by_source["local file"].where == str((folder / "lrlab_plugins.py").resolve())
    assert by_source["local file"].hooks == ["lrlab_sweep_end"]
    assert (by_source["api"].name, by_source["api"].hooks) == ("my-api-plugin",
                                                                ["lrlab_run_start"])


def test_p_of_a_missing_module_is_a_usage_error():
    with pytest.raises(lrlab.UsageError, match="cannot load plugin 'no_such_module_x'"):
        load_plugins(["no_such_module_x"], use_entry_points=False)


# -- guards -------------------------------------------------------------------------------


def test_an_unknown_marked_hook_fails_loading_naming_the_plugin():
    bad = named("typo-plugin", lrlab_regsiter_models=lrlab.hookimpl(lambda register: None))
    with pytest.raises(lrlab.PluginError, match="plugin 'typo-plugin' failed to load:.*"
                                                "lrlab_regsiter_models"):
        load(bad)


def test_an_unknown_unmarked_lrlab_function_fails_loading_too():
    bad = named("typo-plugin", lrlab_epoch_ends=lambda run: None)
    with pytest.raises(lrlab.PluginError, match="plugin 'typo-plugin'.*lrlab_epoch_ends"):
        load(bad)


def test_a_wrong_argument_name_fails_loading_naming_the_plugin_and_argument():
    bad = named("argy", lrlab_epoch_end=lrlab.hookimpl(lambda run, epoch, metric: None))
    with pytest.raises(lrlab.PluginError, match="plugin 'argy' failed to load:.*metric"):
        load(bad)


def test_a_component_registered_twice_names_both_plugins():
    dup = named("dup-plugin", lrlab_register_models=lambda register: register("mlp",
                                                                              tiny_model))
    with pytest.raises(lrlab.PluginError, match="model 'mlp' is registered twice: by plugin "
                                                "'builtin.models' and by plugin 'dup-plugin'"):
        load(dup)


def test_two_plugins_with_one_name_fail_loading():
    with pytest.raises(lrlab.PluginError, match="two plugins are named 'same'"):
        load(named("same", lrlab_run_start=lambda run: None),
             named("same", lrlab_run_end=lambda run: None))


def test_an_exception_in_a_registration_hook_names_the_plugin_and_the_hook():
    def broken(register):
        raise ZeroDivisionError("oops")

    with pytest.raises(lrlab.PluginError, match="plugin 'reg-boom' failed in "
                                                "lrlab_register_losses: ZeroDivisionError"):
        load(named("reg-boom", lrlab_register_losses=broken))


def test_an_entry_point_that_fails_to_import_is_named(tmp_path, monkeypatch):
    (tmp_path / "lrlab_broken_plugin.py").write_text("raise RuntimeError('bad import')\n")
    fake_distribution(tmp_path, "broken-dist", {"broken": "lrlab_broken_plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(lrlab.PluginError, match="plugin 'broken' .*failed to import: "
                                                "RuntimeError: bad import"):
        load_plugins()


def wrong_model(input_shape, num_classes):
    return "not a module"


def wrong_dataset(root):
    return [1, 2, 3]


def test_a_factory_of_the_wrong_kind_fails_before_training_naming_plugin_and_component(out):
    # every component is built once before anything is written (sweep.dry_build)
    bad = named("wrong-kind", lrlab_register_models=lambda register: register("wrong",
                                                                              wrong_model))
    with pytest.raises(lrlab.PluginError, match="model 'wrong' from plugin 'wrong-kind' "
                                                "returned str, not a torch.nn.Module"):
        run_tiny_sweep(bad, out=out, model=["wrong", "linear"])
    assert list(out.iterdir()) == []  # nothing written: no sweep folder


def test_a_dataset_of_the_wrong_kind_fails_the_sweep_naming_plugin_and_component(out):
    bad = named("wrong-data", lrlab_register_datasets=lambda register: register(
        "wrongdata", wrong_dataset))
    with pytest.raises(lrlab.PluginError, match="dataset 'wrongdata' from plugin "
                                                "'wrong-data' returned list"):
        run_tiny_sweep(bad, out=out, dataset="wrongdata")


def test_a_raising_helper_inside_a_hook_still_names_the_plugin(out):
    def helper():
        raise ValueError("deep")

    class Deep:
        __name__ = "deep-plugin"

        def lrlab_sweep_start(self):
            helper()

    with pytest.raises(lrlab.PluginError, match="plugin 'deep-plugin' failed in "
                                                "lrlab_sweep_start: ValueError: deep"):
        run_tiny_sweep(Deep(), out=out)


# -- tracing ------------------------------------------------------------------------------


def test_lrlab_trace_hooks_prints_each_hook_call(out, monkeypatch, capsys):
    monkeypatch.setenv("LRLAB_TRACE_HOOKS", "1")
    result = run_tiny_sweep(named("traced", lrlab_run_end=lambda run: None), out=out,
                            thresholds={"underfit_still_improving": 10.0,
                                        "underfit_still_improving_acc": 10.0})
    err = capsys.readouterr().err
    rid = result.runs["run_id"][0]
    assert "[lrlab hooks] lrlab_register_models(register) -> builtin.models" in err
    assert f"[lrlab hooks] lrlab_run_start(run={rid}) -> " in err
    assert f"[lrlab hooks] lrlab_run_end(run={rid}, result=<result {rid} ok>) -> traced" \
        in err
    assert "lrlab_epoch_end(run=" in err and "epoch=2, metrics={lr: 0.1" in err
    assert "[lrlab hooks] lrlab_sweep_end(config=<config tiny>, runs=<table 1x" in err


@pytest.mark.parametrize("value", ["", "0"])
def test_tracing_is_off_unless_asked(out, monkeypatch, capsys, value):
    monkeypatch.setenv("LRLAB_TRACE_HOOKS", value)
    load()
    assert "[lrlab hooks]" not in capsys.readouterr().err
