"""PT2E quantization that both XNNPACK formats (export/executorch/, export/litert/) share: the QAT scheme, the nodes kept in float."""
