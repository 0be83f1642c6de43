"""The GPUs' peak FLOP/s, for train.py's and bench/bench_train.py's model FLOPs utilization (MFU).

Not part of the network (model.py): a table of vendor figures, looked up by the exact name
torch.cuda.get_device_name() returns.
"""

# Dense (no sparsity) bf16/fp16 tensor-core peak FLOP/s with fp32 accumulation, from the vendor
# datasheets, keyed by the exact torch.cuda.get_device_name(): a substring would let "NVIDIA L4"
# match the L40S and "H100" the H100 PCIe. V100 and T4 have no bf16; their figure is fp16's.
GPU_PEAK_FLOPS = {
    "NVIDIA B200": 2250e12,
    "NVIDIA H200": 989e12,  # SXM
    "NVIDIA H200 NVL": 835e12,
    "NVIDIA GH200 480GB": 989e12,
    "NVIDIA H100 80GB HBM3": 989e12,  # SXM5
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA H100 NVL": 835e12,
    "NVIDIA H800": 989e12,
    "NVIDIA H800 PCIe": 756e12,
    "NVIDIA H20": 148e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA A100-PCIE-80GB": 312e12,
    "NVIDIA A800-SXM4-80GB": 312e12,
    "NVIDIA A800 80GB PCIe": 312e12,
    "NVIDIA L40S": 362e12,
    "NVIDIA L40": 181e12,
    "NVIDIA L4": 121e12,
    "NVIDIA A40": 150e12,
    "NVIDIA A10": 125e12,
    "NVIDIA A10G": 70e12,  # AWS's variant; no NVIDIA datasheet, AWS-published figure
    "NVIDIA RTX 6000 Ada Generation": 364e12,
    "NVIDIA RTX A6000": 155e12,
    "NVIDIA GeForce RTX 4090": 165e12,
    "NVIDIA GeForce RTX 3090": 71e12,
    "Tesla V100-SXM2-16GB": 125e12,
    "Tesla V100-SXM2-32GB": 125e12,
    "Tesla V100-PCIE-16GB": 112e12,
    "Tesla V100-PCIE-32GB": 112e12,
    "Tesla V100S-PCIE-32GB": 130e12,
    "Tesla T4": 65e12,
}


def gpu_peak_flops(name):
    """The peak for a device name (torch.cuda.get_device_name()), or None for a card not in
    GPU_PEAK_FLOPS: better no MFU than one against another card's peak."""
    return GPU_PEAK_FLOPS.get(name.strip())
