from cvtasks.cli.summary import backbone_info, layer_table
from cvtasks.registry import BACKBONES


def test_lenet5_params_and_flops_by_hand():
    info = backbone_info("lenet5")
    real = BACKBONES.build("lenet5", num_classes=1000)
    assert info.params == sum(p.numel() for p in real.parameters())
    assert info.input_size == 32
    # 2 FLOPs per multiply-add: conv = 2·Cout·H·W·Cin·k², linear = 2·out·in
    flops = (
        2 * 6 * 28 * 28 * 3 * 25  # C1
        + 2 * 16 * 10 * 10 * 6 * 25  # C3
        + 2 * 120 * 1 * 1 * 16 * 25  # C5
        + 2 * 84 * 120  # F6
        + 2 * 1000 * 84  # output
    )
    assert info.gflops * 1e9 == flops
    assert [(s["num_chs"], s["reduction"]) for s in info.stages] == [(6, 2), (16, 4), (120, 4)]
    assert info.line().split()[:2] == ["lenet5", "146,156"]


def test_layer_table_shapes_follow_the_seed():
    rows = {r.split()[0]: r.split() for r in layer_table("lenet5")}
    assert rows["c1"][2] == "6x28x28" and rows["c3"][2] == "16x10x10"
    assert rows["c5"][2] == "120x1x1" and rows["f6"][2] == "1x1x84"
    assert rows["total"][-1] == f"{146_156:,}"
