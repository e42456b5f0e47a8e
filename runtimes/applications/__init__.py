"""Applications: deraining files, frames and videos, whole or tiled."""
