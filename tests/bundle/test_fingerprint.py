"""The device fingerprint a bundle records: Arm cores and flags named, emulation told apart."""
from __future__ import annotations

from treefuse.portable.device_run import probe_failed
from treefuse.portable.fingerprint import cpu_facts

ARM_CPUINFO = {"Features": "fp asimd evtstrm aes crc32 asimddp i8mm", "CPU implementer": "0x41", "CPU part": "0xd42"}
X86_CPUINFO = {"model name": "AMD EPYC", "flags": "fpu sse2 avx2 fma"}


def test_an_arm_board_is_named_with_its_flags():
    facts = cpu_facts(ARM_CPUINFO, machine="aarch64")
    assert facts["model"] == "Cortex-A78AE" and facts["isa_flags"] == ["asimd", "asimddp", "i8mm"]
    assert facts["emulated"] is False and facts["isa_flags_source"] == "/proc/cpuinfo"


def test_an_arm_process_reading_x86_cpuinfo_is_emulated():
    facts = cpu_facts(X86_CPUINFO, machine="aarch64")
    assert facts["emulated"] is True and "qemu-user on AMD EPYC" in facts["model"]


def test_x86_keeps_its_flags():
    facts = cpu_facts(X86_CPUINFO, machine="x86_64")
    assert facts["isa_flags"] == ["avx2", "fma"] and "emulated" not in facts


def test_runtime_messages_that_mean_the_cpu_probe_failed():
    assert probe_failed("onnxruntime warning: cpuinfo_initialize failed. May cause CPU EP performance degradation")
    assert probe_failed("E executorch:XNNPACKBackend.cpp:53] Failed to initialize, XNNPACK status: 0x5")
    assert not probe_failed("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
