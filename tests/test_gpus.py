"""Tests for gpus.py: peaks by exact card name."""

from gpus import gpu_peak_flops


def test_gpu_peak_flops_matches_exact_names():
    assert gpu_peak_flops("NVIDIA L40S") == 362e12  # not the L4's 121 (a substring would say so)
    assert gpu_peak_flops("NVIDIA L4") == 121e12
    assert gpu_peak_flops("NVIDIA L40") == 181e12
    assert gpu_peak_flops("NVIDIA H100 PCIe") == 756e12  # not the SXM's 989
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12  # the SXM5 card's name
    assert gpu_peak_flops("NVIDIA H200") == 989e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB") == gpu_peak_flops("NVIDIA A100 80GB PCIe") == 312e12
    assert gpu_peak_flops("NVIDIA A10") == 125e12 and gpu_peak_flops("NVIDIA A10G") == 70e12
    assert gpu_peak_flops("Tesla V100-SXM2-16GB") == 125e12 and gpu_peak_flops("Tesla T4") == 65e12
    assert gpu_peak_flops("NVIDIA B200") == 2250e12
    # unknown cards get no figure (no MFU) instead of an A100's
    for name in ("NVIDIA GeForce GTX 1080", "NVIDIA H100", "L4", "", "NVIDIA L40S-ish"):
        assert gpu_peak_flops(name) is None, name
