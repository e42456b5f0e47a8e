"""Which layers stay in float when activations are 8-bit: shared by Core ML w8a8 and the PT2E INT8 flows."""
from __future__ import annotations

# Left in float (FP16 in the package): the across-block fuse tree concatenates block outputs
# whose ranges differ widely, so one 8-bit scale per concat loses the small ones. Measured on
# the shipped weights (2 heavy-rain-sample5 images, torch-side fake quantization): output PSNR
# vs float 24.2 dB with everything quantized, 41.7 dB with these fuses in float; skipping the
# head, the blocks or the tail instead left it at ~24 dB. They are 7 of the network's 1x1 convs.
FLOAT_MODULES = ("across_fuses",)
