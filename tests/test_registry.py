import pytest

from cvtasks.registry import BACKBONES, DATASETS, HEADS, TASKS, Registry


def make_registry() -> Registry:
    reg = Registry("widget")
    reg._ready = True  # no built-in module, no plugins: a registry under test only

    @reg.register("resnet18")
    def resnet18(width: int = 1):
        return ("resnet18", width)

    @reg.register("resnet50")
    def resnet50(width: int = 1):
        return ("resnet50", width)

    @reg.register()
    def lenet5():
        return "lenet5"

    return reg


def test_register_and_build_with_keywords():
    reg = make_registry()
    assert reg.build("resnet18", width=4) == ("resnet18", 4)
    assert reg.build("lenet5") == "lenet5"  # name defaults to the function name


def test_build_drops_none_keywords_but_passes_others_through():
    reg = make_registry()
    assert reg.build("resnet18", width=None) == ("resnet18", 1)
    with pytest.raises(TypeError):
        reg.build("resnet18", depth=3)  # no silent keyword sink


def test_names_sorted_and_filtered_by_pattern():
    reg = make_registry()
    assert reg.names() == ["lenet5", "resnet18", "resnet50"]
    assert reg.names("resnet*") == ["resnet18", "resnet50"]
    assert "resnet18" in reg and "vgg" not in reg
    assert len(reg) == 3


def test_unknown_name_names_registry_close_matches_and_plugins():
    reg = make_registry()
    with pytest.raises(KeyError) as err:
        reg.get("resnet19")
    msg = str(err.value)
    assert "widget" in msg and "'resnet19'" in msg
    assert "Did you mean: resnet18, resnet50" in msg
    assert "cvtasks.plugins" in msg and "plugins:" in msg


def test_duplicate_name_is_an_error_naming_the_holder_unless_override():
    reg = make_registry()
    with pytest.raises(KeyError, match=r"already registered by module 'tests\.test_registry'"):
        reg.add("resnet18", lambda: "other")
    reg.add("resnet18", lambda: "other", override=True)
    assert reg.build("resnet18") == "other"


def test_prefix_resolution():
    reg = make_registry()
    reg.register_prefix("timm/", lambda name, **kw: ("timm", name, kw))
    assert reg.build("timm/convnext_tiny", in_chans=1) == ("timm", "convnext_tiny", {"in_chans": 1})
    with pytest.raises(KeyError, match="'timm/<name>'"):
        reg.get("timm/")  # an empty model name is not a prefix match


def test_builtin_registries_are_populated_on_first_read():
    assert "lenet5" in BACKBONES.names()
    assert {"linear", "mlp"} <= set(HEADS.names())
    assert "classification" in TASKS.names()
    assert {"digits", "image_folder"} <= set(DATASETS.names())


def test_builtin_unknown_task_lists_valid_names():
    with pytest.raises(KeyError) as err:
        TASKS.get("clasification")
    assert "Did you mean: classification" in str(err.value)
