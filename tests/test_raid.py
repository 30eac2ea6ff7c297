"""fastrec.stages.raid: planning and refusals against fake /proc, /sys and programs that log their argv."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from fastrec.stages import raid
from fastrec.cli import main
from fastrec.stages.raid import RaidError, RaidOptions, System, create_raid, plan_raid

UUID = "0a1b2c3d-0000-4000-8000-00000000abcd"
# Each fake logs "NAME ARGS" to $FAKE_LOG. wipefs prints the signatures listed in
# $FAKE_DIR/sigs/<device name>; blkid prints the UUID; $FAKE_DIR/fail/<NAME> makes NAME fail.
# Shell builtins only: PATH holds nothing but the fakes.
FAKE = """#!/bin/sh
name=${0##*/}
echo "$name $*" >> "$FAKE_LOG"
if [ -e "$FAKE_DIR/fail/$name" ]; then echo "$name: simulated failure" >&2; exit 1; fi
case "$name" in
  wipefs) for a in "$@"; do last="$a"; done
          f="$FAKE_DIR/sigs/${last##*/}"
          if [ -e "$f" ]; then while IFS= read -r l; do echo "$l"; done < "$f"; fi; exit 0 ;;
  blkid) echo "%s" ;;
  mkdir) exec /bin/mkdir "$@" ;;
esac
exit 0
""" % UUID
PROGRAMS = ["mdadm", "mkfs.ext4", "mkfs.xfs", "mount", "wipefs", "blkid", "mkdir"]


class Machine:
    """A fake machine: /proc and /sys trees, a bin folder of fakes, an fstab, a user id."""

    def __init__(self, base):
        self.base = base
        self.proc, self.sys, self.bin = base / "proc", base / "sys", base / "bin"
        self.log = base / "log"
        for d in (self.proc, self.sys / "class" / "block", self.bin, base / "sigs", base / "fail"):
            d.mkdir(parents=True)
        for f in ("mounts", "mdstat", "swaps"):
            (self.proc / f).write_text("")
        (self.proc / "mounts").write_text("/dev/vda1 / ext4 rw 0 0\n")
        (self.proc / "swaps").write_text("Filename Type Size Used Priority\n")
        for name in ("sdb", "sdc", "sdd", "nvme0n1", "vda"):
            self.disk(name)
        self.disk("vda", parts=["vda1"])
        for p in PROGRAMS:
            self.program(p)
        self.fstab = base / "fstab"
        self.fstab.write_text("# static file system information\n/dev/vda1 / ext4 defaults 0 1\n")
        self.uid = 0
        os.environ["FAKE_LOG"], os.environ["FAKE_DIR"] = str(self.log), str(base)

    def disk(self, name, parts=(), holders=()):
        d = self.sys / "class" / "block" / name
        (d / "holders").mkdir(parents=True, exist_ok=True)
        for p in parts:
            (d / p).mkdir(exist_ok=True)
            (d / p / "partition").write_text("1\n")
        for h in holders:
            (d / "holders" / h).mkdir()

    def program(self, name):
        p = self.bin / name
        p.write_text(FAKE)
        p.chmod(0o755)

    def remove(self, name):
        (self.bin / name).unlink()

    def system(self):
        return System(proc=str(self.proc), sys=str(self.sys), path=str(self.bin),
                      fstab=str(self.fstab), geteuid=lambda: self.uid)

    def calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def m(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_LOG", "")
    monkeypatch.setenv("FAKE_DIR", "")
    machine = Machine(tmp_path / "machine")
    monkeypatch.setattr(raid, "default_system", machine.system)
    return machine


def opts(m, *devices, **kw):
    return RaidOptions(devices=list(devices) or ["/dev/sdb", "/dev/sdc"], mount=str(m.base / "data"), **kw)


def test_dry_run_plans_ext4_with_stripe_geometry(m):
    s = create_raid(opts(m), system=m.system())
    assert not s.executed
    assert s.plan.shell() == [
        "mdadm --create /dev/md0 --level=0 --raid-devices=2 --chunk=512 --metadata=1.2 --run /dev/sdb /dev/sdc",
        "mkfs.ext4 -b 4096 -m 0 -E stride=128,stripe_width=256 /dev/md0",
        f"mkdir -p {m.base / 'data'}",
        f"mount -o noatime /dev/md0 {m.base / 'data'}",
    ]
    # a dry run only looks: the signature probes are the only programs run
    assert m.calls() == ["wipefs --noheadings --output TYPE /dev/sdb",
                         "wipefs --noheadings --output TYPE /dev/sdc"]
    assert not (m.base / "data").exists()


def test_xfs_geometry_chunk_and_free_md(m):
    (m.proc / "mdstat").write_text("Personalities : [raid0]\nmd0 : active raid0 sde[1] sdf[0]\n"
                                   "      100 blocks super 1.2 512k chunks\n\nunused devices: <none>\n")
    m.disk("md1")
    p = plan_raid(opts(m, "/dev/sdb", "/dev/sdc", "/dev/nvme0n1", fs="xfs", chunk_kib=256), m.system())
    assert p.md == "/dev/md2"
    assert ["mkfs.xfs", "-d", "su=256k,sw=3", "/dev/md2"] in p.commands
    assert "--chunk=256" in p.commands[0] and "--raid-devices=3" in p.commands[0]


def test_execute_runs_the_plan_in_order_and_persists(m):
    s = create_raid(opts(m, persist=True), execute=True, system=m.system())
    assert s.executed
    mount = m.base / "data"
    assert m.calls()[2:] == [
        "mdadm --create /dev/md0 --level=0 --raid-devices=2 --chunk=512 --metadata=1.2 --run /dev/sdb /dev/sdc",
        "mkfs.ext4 -b 4096 -m 0 -E stride=128,stripe_width=256 /dev/md0",
        f"mkdir -p {mount}",
        f"mount -o noatime /dev/md0 {mount}",
        "blkid -s UUID -o value /dev/md0",
    ]
    line = f"UUID={UUID} {mount} ext4 noatime,nofail 0 2"
    assert s.fstab_line == line
    assert m.fstab.read_text().splitlines()[-1] == line
    assert m.fstab.read_text().startswith("# static file system information\n/dev/vda1")
    with pytest.raises(RaidError, match="already mounts something"):   # twice: refused
        plan_raid(opts(m, persist=True), m.system())


@pytest.mark.parametrize("setup, device, expected", [
    (lambda m: (m.proc / "mounts").write_text("/dev/sdb /mnt/old ext4 rw 0 0\n"),
     "/dev/sdb", r"/dev/sdb is mounted \(/dev/sdb on /mnt/old\); unmount it \(umount /mnt/old\)"),
    (lambda m: (m.proc / "mounts").write_text("/dev/sdd1 /mnt/a\\040b ext4 rw 0 0\n") and m.disk("sdd", ["sdd1"]),
     "/dev/sdd", r"/dev/sdd is mounted \(/dev/sdd1 on /mnt/a b\)"),
    (lambda m: (m.proc / "mdstat").write_text("md5 : active raid1 sdc[1] sdb[0]\n"),
     "/dev/sdb", r"/dev/sdb is part of the array /dev/md5; .*mdadm --stop /dev/md5.*--zero-superblock /dev/sdb"),
    (lambda m: (m.proc / "swaps").write_text("Filename Type\n/dev/sdb partition 1 0 -2\n"),
     "/dev/sdb", r"/dev/sdb is in use as swap"),
    (lambda m: m.disk("sdb", holders=["dm-0"]), "/dev/sdb", r"/dev/sdb is held by dm-0"),
    (lambda m: m.disk("sdb", parts=["sdb1", "sdb2"]), "/dev/sdb",
     r"/dev/sdb carries partitions \(sdb1, sdb2\); if their data can go, pass --force"),
    (lambda m: (m.base / "sigs" / "sdc").write_text("ext4\n"), "/dev/sdc",
     r"/dev/sdc carries a ext4 signature .* pass --force"),
    (lambda m: m.remove("mdadm"), "/dev/sdb", r"mdadm is not installed; install it: apt-get install mdadm"),
    (lambda m: m.remove("mkfs.ext4"), "/dev/sdb", r"apt-get install e2fsprogs"),
    (lambda m: (m.base / "data").mkdir() or (m.base / "data" / "f").write_text("x"), "/dev/sdb",
     r"is not empty; mounting over it would hide its files"),
])
def test_refusals_name_the_device_and_what_to_do(m, setup, device, expected):
    setup(m)
    with pytest.raises(RaidError, match=expected):
        create_raid(opts(m, "/dev/sdb", "/dev/sdc", "/dev/sdd"), system=m.system())
    assert not [c for c in m.calls() if not c.startswith("wipefs --noheadings")]   # nothing ran


def test_more_refusals(m):
    with pytest.raises(RaidError, match="at least 2 devices"):
        plan_raid(opts(m, "/dev/sdb"), m.system())
    with pytest.raises(RaidError, match=r"/dev/sdx is not a block device the kernel knows"):
        plan_raid(opts(m, "/dev/sdb", "/dev/sdx"), m.system())
    with pytest.raises(RaidError, match="given more than once"):
        plan_raid(opts(m, "/dev/sdb", "/dev/sdb"), m.system())
    with pytest.raises(RaidError, match="power of two"):
        plan_raid(opts(m, chunk_kib=384), m.system())
    m.remove("mkfs.xfs")
    with pytest.raises(RaidError, match="apt-get install xfsprogs"):
        plan_raid(opts(m, fs="xfs"), m.system())
    m.disk("md0")
    with pytest.raises(RaidError, match=r"--md /dev/md0 is in use; choose another \(e.g. /dev/md1\)"):
        plan_raid(opts(m, md="/dev/md0"), m.system())


def test_root_needed_only_to_execute(m):
    m.uid = 1000
    assert create_raid(opts(m), system=m.system()).plan.commands
    with pytest.raises(RaidError, match="needs root; run it again with sudo"):
        create_raid(opts(m), execute=True, system=m.system())
    assert not [c for c in m.calls() if c.startswith("mdadm")]


def test_force_wipes_partitions_and_signatures(m):
    m.disk("sdb", parts=["sdb1"])
    (m.base / "sigs" / "sdc").write_text("linux_raid_member\n")
    p = plan_raid(opts(m, force=True), m.system())
    assert p.shell()[:3] == ["wipefs --all /dev/sdb", "wipefs --all /dev/sdc",
                             "mdadm --create /dev/md0 --level=0 --raid-devices=2 --chunk=512 "
                             "--metadata=1.2 --run /dev/sdb /dev/sdc"]
    assert p.commands[3][:2] == ["mkfs.ext4", "-F"]
    # --force never overrides a mounted device or an array member
    (m.proc / "mdstat").write_text("md9 : active raid0 sdc[0] sdd[1]\n")
    with pytest.raises(RaidError, match="part of the array /dev/md9"):
        plan_raid(opts(m, force=True), m.system())


def test_unreadable_signatures_are_a_note_for_dry_runs(m):
    (m.base / "fail" / "wipefs").write_text("")
    p = plan_raid(opts(m), m.system())
    assert any("could not check /dev/sdb" in n for n in p.notes)
    with pytest.raises(RaidError, match="could not check /dev/sdb for existing data: wipefs: wipefs: simulated"):
        plan_raid(opts(m), m.system(), execute=True)


def test_failing_command_is_named(m):
    (m.base / "fail" / "mkfs.ext4").write_text("")
    with pytest.raises(RaidError, match=r"`mkfs.ext4 -b 4096 .*` failed \(exit 1\): mkfs.ext4: simulated "
                                        r"failure; .*mdadm --stop /dev/md0"):
        create_raid(opts(m), execute=True, system=m.system())
    assert not [c for c in m.calls() if c.startswith("mount")]


def test_cli_dry_run_and_refusal(m, capsys):
    mount = str(m.base / "data")
    assert main(["raid", "/dev/sdb", "/dev/sdc", "--mount", mount, "--persist"]) == 0
    out = capsys.readouterr().out
    assert "# dry run" in out and "mdadm --create /dev/md0" in out and "# and append to /etc/fstab" in out
    assert not [c for c in m.calls() if not c.startswith("wipefs --noheadings")]
    (m.proc / "mdstat").write_text("md0 : active raid0 sdb[0] sdd[1]\n")
    assert main(["raid", "/dev/sdb", "/dev/sdc", "--mount", mount, "--execute"]) == 2
    assert "/dev/sdb is part of the array /dev/md0" in capsys.readouterr().err


def test_parsers():
    assert raid.parse_mdstat("md127 : inactive sdb[0](S) nvme0n1p2[1]\nunused devices: <none>\n") == \
        {"md127": {"sdb", "nvme0n1p2"}}
    assert raid.parse_mounts("/dev/x /a\\040b\\011c ext4 rw 0 0\n") == [("/dev/x", "/a b\tc")]


LOOP_TOOLS = ["losetup", "mdadm", "mkfs.ext4", "mount", "umount", "wipefs"]


@pytest.mark.skipif(os.environ.get("FASTREC_TEST_LOOP") != "1", reason="set FASTREC_TEST_LOOP=1 to run on loop devices")
def test_loop_devices_for_real(tmp_path):
    """Opt-in: two sparse files as loop devices, striped, formatted, mounted, torn down."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = os.environ.get("PATH", "") + ":" + raid.SBIN
    missing = [t for t in LOOP_TOOLS if shutil.which(t, path=path) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    if not os.path.exists("/proc/mdstat"):
        pytest.skip("the kernel has no md driver loaded (/proc/mdstat is missing)")
    run = lambda *a: subprocess.run(a, capture_output=True, text=True, env=dict(os.environ, PATH=path))
    loops, md, mount = [], None, tmp_path / "mnt"
    try:
        for i in range(2):
            img = tmp_path / f"disk{i}.img"
            with open(img, "wb") as f:
                f.truncate(64 << 20)
            r = run("losetup", "--find", "--show", str(img))
            if r.returncode != 0:
                pytest.skip(f"the kernel does not allow loop devices here: {r.stderr.strip()}")
            loops.append(r.stdout.strip())
        s = create_raid(RaidOptions(devices=loops, mount=str(mount), chunk_kib=64), execute=True)
        md = s.plan.md
        assert any(line.split()[1] == str(mount) for line in open("/proc/mounts"))
        (mount / "probe").write_bytes(b"x" * 100_000)
        with pytest.raises(RaidError, match="part of the array"):
            plan_raid(RaidOptions(devices=loops, mount=str(tmp_path / "m2")))
    except RaidError as err:
        if "`mdadm --create" in str(err):
            pytest.skip(f"the kernel does not allow md arrays here: {err}")
        raise
    finally:
        if md:
            run("umount", str(mount))
            run("mdadm", "--stop", md)
        for dev in loops:
            run("mdadm", "--zero-superblock", dev)
            run("losetup", "-d", dev)
