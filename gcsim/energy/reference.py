"""Published reference figures: the analog attention's energy and latency per token, and the
GPU baselines, as reported by Leroux et al., Nat. Comput. Sci. 5, 813 (2025) (MISSION.md)."""

PAPER_ENERGY_PER_HEAD_J = {          # per token per head
    "QK array + HardSigmoid": 1120e-12,
    "phi-V array": 700e-12,
    "DACs (K/V writes)": 330e-12,
    "digital control and routing": 4e-9,
}
PAPER_LATENCY_S = 65e-9              # per token
PAPER_HEADS = 12
PAPER_WINDOW = 1024
# GPU references from the paper: (latency per token, energy per token) for 12 heads, W = 1024.
GPU_REFERENCES = {"RTX 4090": (22.4e-6, 7.18e-3), "Jetson Nano": (489e-6, 3.25e-3)}
