"""Weight-space averages of exported students (`xmod_core.soup`)."""
from dataclasses import replace

import pytest
import torch

from xmod_core.checkpoint import CheckpointError, load_checkpoint, save_atomic
from xmod_core.model import DIOD, ModelConfig, load_student
from xmod_core.soup import main, soup
from xmod_core.stages import student_config
from xmod_core.train import export_student

TINY = ModelConfig(widths=(8, 8, 8, 8, 8), blocks=(1, 1, 1, 1), num_slots=4, slot_dim=16, mlp_hidden=32,
                   gru_hidden=16, decoder_channels=8, norm="group")


def student(path, seed, modality="lidar", cfg=TINY):
    torch.manual_seed(seed)
    m = DIOD(student_config(cfg, modality))
    export_student(path, "3d_burn_in", modality, cfg, m.state_dict(), {"step": 10 * seed, "seed": seed})
    return path


@pytest.fixture
def two(tmp_path):
    return student(tmp_path / "a.pt", 1), student(tmp_path / "b.pt", 2)


def weights(path):
    return load_checkpoint(path)["state_dict"]


def test_uniform_and_weighted_soups_average_every_parameter(two):
    a, b = two
    wa, wb = weights(a), weights(b)
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)           # two different students
    uni = soup([str(a), str(b)])
    w31 = soup([str(a), str(b)], [3, 1])
    for k in wa:
        torch.testing.assert_close(uni["state_dict"][k], (wa[k] + wb[k]) / 2)
        torch.testing.assert_close(w31["state_dict"][k], 0.75 * wa[k] + 0.25 * wb[k])
    assert [m["weight"] for m in w31["meta"]["soup"]] == [0.75, 0.25]
    assert [m["seed"] for m in w31["meta"]["soup"]] == [1, 2]
    assert uni["stage"] == "3d_burn_in" and uni["modality"] == "lidar"


def test_batchnorm_students_average_their_statistics_and_keep_the_first_counter(tmp_path):
    """The paper configs use BatchNorm: its running statistics are averaged like the weights, its
    integer step counter (different in every fine-tune) is taken from the first student."""
    cfg = replace(TINY, norm="batch")
    paths = []
    for seed, steps in ((1, 7), (2, 300)):
        torch.manual_seed(seed)
        m = DIOD(student_config(cfg, "lidar"))
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.num_batches_tracked.fill_(steps)
                mod.running_mean.uniform_(-1, 1)
        paths.append(tmp_path / f"bn{seed}.pt")
        export_student(paths[-1], "3d_burn_in", "lidar", cfg, m.state_dict(), {"step": steps, "seed": seed})
    out = soup([str(p) for p in paths])["state_dict"]
    wa, wb = weights(paths[0]), weights(paths[1])
    counters = [k for k in wa if k.endswith("num_batches_tracked")]
    assert counters and all(out[k].item() == 7 and out[k].dtype == torch.int64 for k in counters)
    means = [k for k in wa if k.endswith("running_mean")]
    assert means and all(torch.allclose(out[k], (wa[k] + wb[k]) / 2) for k in means)


def test_a_soup_loads_as_a_student_and_a_soup_of_one_student_is_that_student(tmp_path, two):
    a, _ = two
    out = tmp_path / "soup.pt"
    assert main([str(out), str(a), str(a)]) == 0
    m_soup, info = load_student(out)
    m_a, _ = load_student(a)
    assert info["meta"]["soup"][0]["path"] == str(a)
    x = torch.randn(1, 2, 4, 32, 96)                                # (B, T, C, H, W) front-view clip
    with torch.no_grad():
        torch.testing.assert_close(m_soup(x)["masks"], m_a(x)["masks"])


def test_students_that_do_not_mix_are_refused_by_name(tmp_path, two):
    a, _ = two
    rgb = student(tmp_path / "rgb.pt", 3, modality="rgb")
    with pytest.raises(CheckpointError, match="rgb student"):
        soup([str(a), str(rgb)])
    s2 = student(tmp_path / "s2.pt", 4, cfg=replace(TINY, output_stride=2, recon_stride=1))
    with pytest.raises(CheckpointError, match="another architecture.*output_stride"):
        soup([str(a), str(s2)])
    train_ck = tmp_path / "step.pt"
    save_atomic({"models": {"students": {"lidar": weights(a)}}, "step": 3}, train_ck)
    with pytest.raises(CheckpointError, match="not an exported student"):
        soup([str(a), str(train_ck)])
    with pytest.raises(ValueError, match="2 weights for 3 students"):
        soup([str(a), str(a), str(a)], [1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        soup([str(a), str(a)], [1, -1])
    with pytest.raises(ValueError, match="at least two"):
        soup([str(a)])


def test_cli_never_overwrites_an_ingredient_and_asks_before_replacing_a_file(tmp_path, two, capsys):
    a, b = two
    before = a.read_bytes()
    assert main([str(a), str(a), str(b)]) == 2
    assert "is one of the students" in capsys.readouterr().err
    assert a.read_bytes() == before
    out = tmp_path / "soup.pt"
    out.write_bytes(b"keep me")
    assert main([str(out), str(a), str(b)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main([str(out), str(a), str(b), "--force"]) == 0
    torch.testing.assert_close(weights(out)["slots_init"], (weights(a)["slots_init"] + weights(b)["slots_init"]) / 2)
    bad = tmp_path / "bad.pt"
    assert main([str(bad), str(a), str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err and not bad.exists()
