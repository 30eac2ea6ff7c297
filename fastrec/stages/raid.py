"""`fastrec raid`: stripe disks into one RAID-0 volume with mdadm, a stripe-aware filesystem, mounted.

The plan is always made and checked first; without `execute` it is only printed (the default,
a dry run). Refusals, each naming the device and what to do: a device the kernel does not
know, one that is mounted or used as swap, one that belongs to an md array (or is held by
another device), one carrying partitions or a filesystem/RAID signature (unless `force`,
which adds `wipefs --all`), a missing program (naming the Debian package), a mount point that
is in use or not empty, and, to execute, not being root.

Everything the checks read comes through `System` (the /proc and /sys roots, the PATH to look
programs up in, /etc/fstab, the user id), so tests run them against fakes.

Stripe geometry: ext4 gets `-b 4096 -E stride=CHUNK/4KiB,stripe_width=stride*N`, xfs gets
`-d su=CHUNKk,sw=N`, so allocation lines up with the chunk each disk holds.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Sequence

from fastrec import fsutil
from fastrec.stages.args import PATH, whole
from fastrec.errors import FastrecError, UsageError

log = logging.getLogger(__name__)

FILESYSTEMS = ("ext4", "xfs")
EXT4_BLOCK = 4096                  # bytes; stride is counted in filesystem blocks
DEFAULT_CHUNK_KIB = 512            # mdadm's default chunk
MOUNT_OPTIONS = "noatime"          # a dataset volume gains nothing from access times
FSTAB_OPTIONS = "noatime,nofail"   # nofail: boot goes on if the array (e.g. cloud NVMe) is gone
# Program -> the Debian package that installs it.
PACKAGES = {"mdadm": "mdadm", "mkfs.ext4": "e2fsprogs", "mkfs.xfs": "xfsprogs",
            "wipefs": "util-linux", "blkid": "util-linux", "mount": "mount"}
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"  # not on a normal user's PATH, but where these live


class RaidError(FastrecError):
    """The array cannot (or must not) be made; the message lists every reason and what to do."""


@dataclass
class RaidOptions:
    """devices: whole disks (or partitions) to stripe. mount: the folder to mount the volume
    on. fs: "ext4" (default) or "xfs". chunk_kib: RAID chunk in KiB (default 512, a power of
    two >= 4). md: the array device (default: the first free /dev/mdN). persist: add an fstab
    line (by UUID). force: wipe partition tables and signatures instead of refusing."""

    devices: Sequence[str]
    mount: str
    fs: str = "ext4"
    chunk_kib: int = DEFAULT_CHUNK_KIB
    md: str | None = None
    persist: bool = False
    force: bool = False


@dataclass
class System:
    """Where raid looks at the machine: the real one by default, fakes in tests."""

    proc: str = "/proc"
    sys: str = "/sys"
    path: str | None = None          # PATH to find programs on; default $PATH + sbin folders
    fstab: str = "/etc/fstab"
    geteuid: Callable[[], int] = os.geteuid

    def search_path(self) -> str:
        return self.path if self.path is not None else os.environ.get("PATH", "") + ":" + SBIN

    def which(self, program: str) -> str | None:
        return shutil.which(program, path=self.search_path())

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        exe = self.which(argv[0])
        if exe is None:
            raise RaidError(f"{argv[0]} is not installed; install it: apt-get install "
                            f"{PACKAGES.get(argv[0], argv[0])}")
        env = dict(os.environ, PATH=self.search_path())
        return subprocess.run([exe, *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, env=env)

    def read(self, rel: str) -> str:
        try:
            with open(os.path.join(self.proc, rel)) as f:
                return f.read()
        except FileNotFoundError:
            return ""


@dataclass
class RaidPlan:
    md: str
    devices: list[str]
    commands: list[list[str]]                      # argv lists, in order
    fstab_line: str | None = None                  # UUID filled in when executed
    notes: list[str] = field(default_factory=list)  # what the plan could not check, hints

    def shell(self) -> list[str]:
        return [shlex.join(c) for c in self.commands]


@dataclass
class RaidSummary:
    plan: RaidPlan
    executed: bool = False
    fstab_line: str | None = None                  # the line appended, when executed


# ---------------------------------------------------------------- reading the machine
def _unescape(s: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """(source, mount point) pairs of /proc/mounts."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 2:
            out.append((_unescape(f[0]), _unescape(f[1])))
    return out


def parse_mdstat(text: str) -> dict[str, set[str]]:
    """Array name -> member device names, from /proc/mdstat."""
    arrays = {}
    for line in text.splitlines():
        m = re.match(r"^(md\S*)\s*:\s*(.*)$", line)
        if m:
            arrays[m.group(1)] = set(re.findall(r"(\S+?)\[\d+\]", m.group(2)))
    return arrays


def _kname(dev: str) -> str:
    """The kernel's name of a device path: /dev/disk/by-id/... -> sdb."""
    return os.path.basename(os.path.realpath(dev))


def _partitions(system: System, name: str) -> list[str]:
    base = os.path.join(system.sys, "class", "block", name)
    try:
        return sorted(p for p in os.listdir(base) if os.path.exists(os.path.join(base, p, "partition")))
    except OSError:
        return []


def _holders(system: System, name: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(system.sys, "class", "block", name, "holders")))
    except OSError:
        return []


def probe_signatures(system: System, dev: str) -> tuple[list[str] | None, str]:
    """(signature types found, "") or (None, why they could not be read)."""
    if system.which("wipefs"):
        r = system.run(["wipefs", "--noheadings", "--output", "TYPE", dev])  # lists; wipes nothing
        if r.returncode == 0:
            return sorted({t.strip() for t in r.stdout.splitlines() if t.strip()}), ""
        return None, f"wipefs: {r.stderr.strip() or f'exit {r.returncode}'}"
    if system.which("blkid"):
        r = system.run(["blkid", "-p", "-o", "export", dev])
        if r.returncode == 2:        # blkid: nothing found
            return [], ""
        if r.returncode == 0:
            return sorted(v for k, _, v in (x.partition("=") for x in r.stdout.splitlines())
                          if k in ("TYPE", "PTTYPE")), ""
        return None, f"blkid: {r.stderr.strip() or f'exit {r.returncode}'}"
    return None, "neither wipefs nor blkid is installed (apt-get install util-linux)"


def _free_md(system: System, arrays: dict[str, set[str]]) -> str:
    n = 0
    while f"md{n}" in arrays or os.path.exists(os.path.join(system.sys, "class", "block", f"md{n}")):
        n += 1
    return f"/dev/md{n}"


# ---------------------------------------------------------------- planning
def plan_raid(opts: RaidOptions, system: System | None = None, *, execute: bool = False) -> RaidPlan:
    """Check the machine and return the commands that make the array; RaidError lists refusals.

    opts: `RaidOptions`. system: where to look (default the real machine). execute: also
    require what running the plan needs (root, signatures readable).
    """
    system = system or System()
    problems: list[str] = []
    notes: list[str] = []
    devices = list(opts.devices)
    if opts.fs not in FILESYSTEMS:
        problems.append(f"--fs {opts.fs!r} is not supported; choose one of {', '.join(FILESYSTEMS)}")
    c = opts.chunk_kib
    if c < 4 or c & (c - 1):
        problems.append(f"--chunk {c} KiB must be a power of two of at least 4 (e.g. 512)")
    if len(devices) < 2:
        problems.append(f"RAID-0 needs at least 2 devices, got {len(devices)}; for one disk, make "
                        f"the filesystem on it directly")
    names = [_kname(d) for d in devices]
    for d in sorted({d for d, n in zip(devices, names) if names.count(n) > 1}):
        problems.append(f"{d} is given more than once (as {_kname(d)}); give each disk once")
    mounts = parse_mounts(system.read("mounts"))
    swaps = [line.split()[0] for line in system.read("swaps").splitlines()[1:] if line.strip()]
    arrays = parse_mdstat(system.read("mdstat"))
    wipe: list[str] = []
    for dev, name in zip(devices, names):
        sysdir = os.path.join(system.sys, "class", "block", name)
        if not os.path.isdir(sysdir):
            problems.append(f"{dev} is not a block device the kernel knows (no {sysdir}); check the "
                            f"name with lsblk")
            continue
        parts = _partitions(system, name)
        mine = {name, *parts}
        for src, target in mounts:
            if src.startswith("/") and _kname(src) in mine:
                problems.append(f"{dev} is mounted ({src} on {target}); unmount it (umount {target}) "
                                f"if its data can go, or choose another device")
        for src in swaps:
            if _kname(src) in mine:
                problems.append(f"{dev} is in use as swap ({src}); swapoff {src} first")
        for md, members in sorted(arrays.items()):
            if members & mine:
                problems.append(f"{dev} is part of the array /dev/{md}; if its data can go, stop it "
                                f"(mdadm --stop /dev/{md}) and clear it (mdadm --zero-superblock {dev})")
        held = [h for h in _holders(system, name) if h not in arrays]
        if held:
            problems.append(f"{dev} is held by {', '.join(held)} (device mapper, LVM or another "
                            f"array); release it first (lsblk {dev} shows the stack)")
        if parts:
            if opts.force:
                wipe.append(dev)
            else:
                problems.append(f"{dev} carries partitions ({', '.join(parts)}); if their data can go, "
                                f"pass --force (wipes the partition table), or choose another device")
                continue
        sigs, why = probe_signatures(system, dev)
        if sigs is None:
            msg = f"could not check {dev} for existing data: {why}"
            if execute and not opts.force:
                problems.append(msg + "; fix that, or pass --force to wipe whatever is there")
            else:
                notes.append(msg + ("; --force wipes it anyway" if opts.force else
                                    "; --execute (as root) checks again"))
            if opts.force and dev not in wipe:
                wipe.append(dev)
        elif sigs:
            if opts.force:
                if dev not in wipe:
                    wipe.append(dev)
            else:
                problems.append(f"{dev} carries a {'/'.join(sigs)} signature (a filesystem, partition "
                                f"table or array holds data there); if it can go, pass --force "
                                f"(wipefs --all clears it), or choose another device")
    md = opts.md or _free_md(system, arrays)
    md_name = _kname(md)
    if opts.md and (md_name in arrays or os.path.exists(os.path.join(system.sys, "class", "block", md_name))):
        problems.append(f"--md {md} is in use; choose another (e.g. {_free_md(system, arrays)})")
    mount = os.path.abspath(opts.mount)
    if any(target == mount for _, target in mounts):
        problems.append(f"--mount {mount} already has something mounted on it; choose another folder")
    elif os.path.exists(mount) and not os.path.isdir(mount):
        problems.append(f"--mount {mount} exists and is not a folder; choose a folder")
    elif os.path.isdir(mount) and os.listdir(mount):
        problems.append(f"--mount {mount} is not empty; mounting over it would hide its files; "
                        f"choose an empty or new folder")
    needed = ["mdadm", f"mkfs.{opts.fs}", "mount"] + (["wipefs"] if wipe else []) + \
        (["blkid"] if opts.persist else [])
    for prog in needed:
        if prog in PACKAGES and system.which(prog) is None:
            problems.append(f"{prog} is not installed; install it: apt-get install {PACKAGES[prog]}")
    fstab_line = None
    if opts.persist:
        fstab_line = f"UUID=<uuid of {md}> {mount} {opts.fs} {FSTAB_OPTIONS} 0 2"
        try:
            with open(system.fstab) as f:
                for line in f:
                    fields = line.split()
                    if len(fields) >= 2 and not fields[0].startswith("#") and fields[1] == mount:
                        problems.append(f"{system.fstab} already mounts something on {mount}: "
                                        f"{line.strip()!r}; remove that line or choose another --mount")
        except FileNotFoundError:
            pass
        notes.append(f"to keep the name {md} after a reboot: mdadm --detail --scan >> "
                     f"/etc/mdadm/mdadm.conf && update-initramfs -u (the fstab line uses the UUID, "
                     f"so the mount works either way)")
    if execute and system.geteuid() != 0:
        problems.append("creating an array needs root; run it again with sudo")
    if problems:
        raise RaidError("refusing to create the array:\n  " + "\n  ".join(problems))

    n = len(devices)
    commands = [["wipefs", "--all", d] for d in wipe]
    commands.append(["mdadm", "--create", md, "--level=0", f"--raid-devices={n}", f"--chunk={c}",
                     "--metadata=1.2", "--run", *devices])
    if opts.fs == "ext4":
        stride = c * 1024 // EXT4_BLOCK
        commands.append(["mkfs.ext4", *(["-F"] if opts.force else []), "-b", str(EXT4_BLOCK), "-m", "0",
                         "-E", f"stride={stride},stripe_width={stride * n}", md])
    else:
        commands.append(["mkfs.xfs", *(["-f"] if opts.force else []), "-d", f"su={c}k,sw={n}", md])
    commands.append(["mkdir", "-p", mount])
    commands.append(["mount", "-o", MOUNT_OPTIONS, md, mount])
    return RaidPlan(md=md, devices=devices, commands=commands, fstab_line=fstab_line, notes=notes)


def create_raid(opts: RaidOptions, *, execute: bool = False, system: System | None = None) -> RaidSummary:
    """Plan the array and, if `execute`, run the plan (and append the fstab line with `persist`).

    opts: `RaidOptions`. execute: run the commands (needs root); default False, a dry run.
    system: where to look and run (default the real machine). RaidError on any refusal or on
    the first command that fails (naming it, its exit status and its error output).
    """
    system = system or System()
    plan = plan_raid(opts, system, execute=execute)
    summary = RaidSummary(plan=plan)
    if not execute:
        return summary
    for argv in plan.commands:
        log.info("running: %s", shlex.join(argv))
        r = system.run(argv)
        if r.returncode != 0:
            raise RaidError(f"`{shlex.join(argv)}` failed (exit {r.returncode}): "
                            f"{(r.stderr or r.stdout).strip()}; the commands before it ran; after fixing "
                            f"the cause, undo them (umount, mdadm --stop {plan.md}) and run again")
    summary.executed = True
    if opts.persist:
        r = system.run(["blkid", "-s", "UUID", "-o", "value", plan.md])
        uuid = r.stdout.strip()
        if r.returncode != 0 or not uuid:
            raise RaidError(f"the array is made and mounted, but blkid could not read the UUID of "
                            f"{plan.md} ({r.stderr.strip()}); add the fstab line by hand: "
                            f"{plan.fstab_line}")
        line = f"UUID={uuid} {os.path.abspath(opts.mount)} {opts.fs} {FSTAB_OPTIONS} 0 2"
        try:
            with open(system.fstab) as f:
                old = f.read()
        except FileNotFoundError:
            old = ""
        fsutil.atomic_write(system.fstab, old + ("" if not old or old.endswith("\n") else "\n") + line + "\n")
        summary.fstab_line = line
        log.info("appended to %s: %s", system.fstab, line)
    return summary


# ---------------------------------------------------------------- command line
def cmd_raid(a: argparse.Namespace) -> int:
    opts = RaidOptions(devices=a.devices, mount=a.mount, fs=a.fs, chunk_kib=a.chunk, md=a.md,
                       persist=a.persist, force=a.force)
    try:
        s = create_raid(opts, execute=a.execute, system=default_system())
    except RaidError as err:
        raise UsageError(str(err)) from err
    if not s.executed:
        print("# dry run: these commands would run (pass --execute to run them, as root)")
        for line in s.plan.shell():
            print(line)
        if s.plan.fstab_line:
            print(f"# and append to /etc/fstab: {s.plan.fstab_line}")
    else:
        print(f"{s.plan.md} ({len(s.plan.devices)} devices, {opts.fs}) mounted on {opts.mount}")
        if s.fstab_line:
            print(f"appended to fstab: {s.fstab_line}")
    for note in s.plan.notes:
        print(f"# note: {note}")
    return 0


def default_system() -> System:
    """The machine `fastrec raid` looks at (tests replace this function)."""
    return System()


def register(subparsers) -> None:
    p = subparsers.add_parser("raid", help="stripe disks into one RAID-0 volume and mount it (dry run by default)")
    p.add_argument("devices", nargs="+", metavar="DEVICE", help="disks to stripe, e.g. /dev/nvme1n1 /dev/nvme2n1")
    p.add_argument("--mount", required=True, type=PATH, help="folder to mount the volume on")
    p.add_argument("--fs", choices=FILESYSTEMS, default="ext4", help="filesystem")
    p.add_argument("--chunk", type=whole(4, 1 << 30), default=DEFAULT_CHUNK_KIB, help="RAID chunk in KiB")
    p.add_argument("--md", type=PATH, help="array device (default: the first free /dev/mdN)")
    p.add_argument("--persist", action="store_true", help="add an /etc/fstab line (by UUID, nofail)")
    p.add_argument("--execute", action="store_true", help="run the commands (default: only print them)")
    p.add_argument("--force", action="store_true",
                   help="wipe partition tables and filesystem signatures instead of refusing")
    p.set_defaults(func=cmd_raid)
