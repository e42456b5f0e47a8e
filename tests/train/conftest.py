"""What every training test shares."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_threads():
    """Training sets torch's thread count; put it back so later tests run as configured."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
