"""Host checks: KVM is decided by testing, and the setting overrides the test."""

from __future__ import annotations

from diffie.sandbox import host


def test_cpu_flags() -> None:
    assert host.cpu_has_virt_flags("processor : 0\nflags\t\t: fpu vme svm sse2\n")
    assert host.cpu_has_virt_flags("flags : vmx lm\n")
    assert not host.cpu_has_virt_flags("flags : fpu sse2 hypervisor\n")
    assert not host.cpu_has_virt_flags("")


def test_setting_overrides_detection() -> None:
    def boom() -> bool:
        raise AssertionError("must not probe")

    assert host.choose_domain_type("qemu", probe=boom) == "qemu"
    assert host.choose_domain_type("kvm", probe=boom) == "kvm"
    assert host.choose_domain_type("auto", probe=lambda: False) == "qemu"
    assert host.choose_domain_type("auto", probe=lambda: True) == "kvm"


def test_probe_boot_sector_is_bootable() -> None:
    sector = host._boot_sector()
    assert len(sector) == 512 and sector[-2:] == b"\x55\xaa"
    assert host._MARKER in sector
