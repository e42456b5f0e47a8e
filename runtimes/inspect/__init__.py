"""Look inside an engine: every layer's output in any backend, compared by name, and where the time goes.

`names` maps ONNX tensors and profiler nodes to the folded model's layer names; one capture
module per runtime exposes every layer (the format table's `layers` column names it);
`compare` judges them layer by layer; `diff` runs two backends; `profile` groups each
runtime's own profiler by op type and by layer.
"""
