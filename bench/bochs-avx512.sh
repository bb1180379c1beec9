#!/bin/bash
# Run a Linux x86-64 user-space program on an emulated AVX-512 CPU (Bochs 2.7,
# cpu model corei7_skylake_x by default), under a Debian bookworm kernel,
# single CPU, serial console. QEMU's TCG emulates no AVX-512; Bochs does, so this is how
# pretext's AVX-512 paths run on a machine without AVX-512 (bench/avx512-check.sh uses it).
# Needs: apt-get install bochs bochsbios vgabios cpio genisoimage (the kernel, busybox and
# isolinux are downloaded once with apt-get download into the cache below).
#
# Usage: bash bench/bochs-avx512.sh PROGRAM [ARGS...]
#
# Environment:
#   TIMEOUT_S=3600        wall-clock limit for the whole Bochs run (seconds)
#   ENV_FOR_GUEST="A=1 B=2"  variables exported in the guest before PROGRAM
#                         (whitespace separated NAME=VALUE words; no spaces inside values)
#   MEM_MB=2048           guest RAM in MiB (Bochs 'memory: guest=, host='). Bochs 2.7 caps host=
#                         at 2048 (a 3072 MiB guest still ran a 2500 MiB memset test fine);
#                         the Bochs BIOS maps no RAM above 3 GiB, so >3072 is useless.
#   CPU_MODEL=corei7_skylake_x  (only this one verified; corei7_icelake_u and tigerlake hang in
#                         early kernel boot, Bochs log full of "RDMSR: Unknown register 0xe7/0xe8")
#   IPS=60000000          Bochs 'ips' (only calibrates guest timers; guest clock is virtual)
#   GUEST_ACPI=1          0 = boot with acpi=off (slightly faster boot)
#   KERNEL_CMDLINE_EXTRA= extra kernel parameters
#   EXTRA_FILES="/path/a /path/b"  extra host files/dirs copied into the guest at the same
#                         path (e.g. data files, dlopen()ed libraries + their deps are added)
#   GUEST_CWD=/tmp        working directory of PROGRAM in the guest
#   KEEP_RUN_DIR=1        keep the per-run directory (bochsrc, logs, iso) for inspection
#   VERBOSE=1             print progress + the full serial log (kernel messages) to stderr
#   BOCHS_CACHE=~/.cache/pretext-bochs  where the kernel skeleton and the per-run folders live
#
# Exit status: PROGRAM's exit status; 124 on timeout; 125 on harness/boot failure.

set -euo pipefail

BASE=${BOCHS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pretext-bochs}
CACHE=$BASE/cache
TIMEOUT_S=${TIMEOUT_S:-3600}
MEM_MB=${MEM_MB:-2048}
CPU_MODEL=${CPU_MODEL:-corei7_skylake_x}
IPS=${IPS:-60000000}
GUEST_CWD=${GUEST_CWD:-/tmp}
KERNEL_FLAVOUR=${KERNEL_FLAVOUR:-cloud-amd64}

log() { if [ "${VERBOSE:-0}" = 1 ]; then echo "[bochs-avx512] $*" >&2; fi; }
die() { echo "[bochs-avx512] ERROR: $*" >&2; exit 125; }

[ $# -ge 1 ] || { sed -n '2,33p' "$0" >&2; exit 125; }
PROG_HOST=$(command -v -- "$1" 2>/dev/null || true)
[ -n "$PROG_HOST" ] && [ -f "$PROG_HOST" ] || die "program not found: $1"
PROG_HOST=$(realpath -- "$PROG_HOST")
shift

for t in bochs cpio gzip genisoimage ldd; do
  command -v $t >/dev/null || die "missing tool $t (apt-get install bochs cpio genisoimage)"
done

# ---------------------------------------------------------------- cached skeleton
# kernel (Debian bookworm, unsigned cloud flavour = few drivers, boots faster),
# static busybox, isolinux.  Built once, under a lock.
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ ! -f "$CACHE/skel/.done" ]; then
  log "building cached skeleton in $CACHE/skel"
  rm -rf "$CACHE/skel" "$CACHE/x" && mkdir -p "$CACHE/skel" "$CACHE/x"
  (
    cd "$CACHE"
    kpkg=$(apt-cache search --names-only "^linux-image-6\.1\.0-[0-9]+-${KERNEL_FLAVOUR}-unsigned\$" |
           awk '{print $1}' | sort -V | tail -1)
    [ -n "$kpkg" ] || { echo "no kernel package found (apt-get update?)" >&2; exit 1; }
    ls ./*.deb >/dev/null 2>&1 && rm -f ./*.deb
    apt-get download "$kpkg" busybox-static isolinux syslinux-common >&2
    for d in ./*.deb; do dpkg-deb -x "$d" x; done
  ) || die "could not download/extract packages"
  cp "$CACHE"/x/boot/vmlinuz-* "$CACHE/skel/vmlinuz"
  cp "$CACHE"/x/boot/config-* "$CACHE/skel/kernel.config"
  cp "$CACHE/x/bin/busybox" "$CACHE/skel/busybox"
  cp "$CACHE/x/usr/lib/ISOLINUX/isolinux.bin" "$CACHE/skel/isolinux.bin"
  cp "$CACHE/x/usr/lib/syslinux/modules/bios/ldlinux.c32" "$CACHE/skel/ldlinux.c32"
  rm -rf "$CACHE/x" "$CACHE"/*.deb
  touch "$CACHE/skel/.done"
fi
flock -u 9
SKEL=$CACHE/skel

# ---------------------------------------------------------------- per-run dir
mkdir -p "$BASE/runs"
RUN=$(mktemp -d "$BASE/runs/run.XXXXXX")
cleanup() {
  if [ -n "${BOCHS_PID:-}" ] && kill -0 "$BOCHS_PID" 2>/dev/null; then kill "$BOCHS_PID" 2>/dev/null || true; fi
  if [ "${KEEP_RUN_DIR:-0}" != 1 ]; then rm -rf "$RUN"; else echo "[bochs-avx512] run dir kept: $RUN" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "[bochs-avx512] ERROR: harness command failed (line $LINENO): $BASH_COMMAND" >&2; exit 125' ERR
log "run dir $RUN"

# ---------------------------------------------------------------- initramfs
ROOT=$RUN/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,root,etc,lib,lib64}
cp "$SKEL/busybox" "$ROOT/bin/busybox"

# copy a host file to the same path in the guest, keeping symlink chains
copy_path() {
  local src=$1 dst
  [ -e "$src" ] || return 0
  dst=$ROOT$src
  # A folder merges into what is already there (the program may sit inside it).
  if [ -d "$src" ] && [ ! -L "$src" ]; then
    mkdir -p "$dst" && cp -a "$src/." "$dst/"
    return 0
  fi
  [ -e "$dst" ] || [ -L "$dst" ] && return 0
  mkdir -p "$(dirname "$dst")"
  if [ -L "$src" ]; then
    cp -P "$src" "$dst"
    local tgt
    tgt=$(readlink "$src")
    case $tgt in /*) ;; *) tgt=$(dirname "$src")/$tgt ;; esac
    copy_path "$tgt"
  else
    cp "$src" "$dst"
  fi
}
# copy a binary/shared object plus everything ldd says it needs
copy_with_deps() {
  local f=$1
  copy_path "$f"
  # ldd output: "libx.so => /path (addr)" or "/lib64/ld-linux... (addr)"
  { ldd "$f" 2>/dev/null || true; } | awk '/=>/ {print $3; next} /^[ \t]*\// {print $1}' |
  while read -r lib; do
    [ -n "$lib" ] && [ -e "$lib" ] || continue
    copy_path "$lib"
    # also put the resolved file there (in case the path is a symlink)
    copy_path "$(realpath "$lib")"
  done
}

copy_with_deps "$PROG_HOST"
# libgcc_s is dlopen()ed by glibc for pthread_cancel/backtraces; cheap to include
for l in /lib/x86_64-linux-gnu/libgcc_s.so.1; do [ -e "$l" ] && copy_with_deps "$l"; done
for f in ${EXTRA_FILES:-}; do
  [ -e "$f" ] || die "EXTRA_FILES entry not found: $f"
  f=$(realpath -s "$f")
  if [ -f "$f" ] && file -L "$f" 2>/dev/null | grep -q ELF; then copy_with_deps "$f"; else copy_path "$f"; fi
done
# loader path some binaries use
[ -e "$ROOT/lib64/ld-linux-x86-64.so.2" ] || copy_path /lib64/ld-linux-x86-64.so.2

# shell-quote for the (busybox ash) init script
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

{
  echo '#!/bin/busybox sh'
  echo '/bin/busybox --install -s /bin'
  echo 'export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root TERM=dumb TMPDIR=/tmp'
  echo 'mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev; mount -t tmpfs tmpfs /tmp'
  echo 'mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm'
  echo 'ln -sf /proc/self/fd /dev/fd 2>/dev/null; echo 127.0.0.1 localhost > /etc/hosts'
  echo 'echo "root:x:0:0:root:/root:/bin/sh" > /etc/passwd; echo "root:x:0:" > /etc/group'
  echo 'ifconfig lo 127.0.0.1 up 2>/dev/null'
  echo 'dmesg -n 1'
  if [ -n "${ENV_FOR_GUEST:-}" ]; then
    read -r -a envs <<<"$ENV_FOR_GUEST"
    for kv in "${envs[@]}"; do
      case $kv in
        [A-Za-z_]*=*) echo "export $(q "$kv")" ;;
        *) die "bad ENV_FOR_GUEST entry '$kv' (want NAME=VALUE)" ;;
      esac
    done
  fi
  echo "cd $(q "$GUEST_CWD") 2>/dev/null || cd /tmp"
  echo 'echo BOCHS-PROGRAM-START'
  printf '%s' "$(q "$PROG_HOST")"
  for a in "$@"; do printf ' %s' "$(q "$a")"; done
  echo ' </dev/null 2>&1'
  echo 'rc=$?'
  echo 'echo; echo "BOCHS-EXIT-CODE=$rc"'
  echo 'sync'
  # let the serial driver drain its transmit buffer (idle guest time is cheap in Bochs)
  echo 'sleep 2'
  echo 'poweroff -f'
  echo 'sleep 100000'
} > "$ROOT/init"
chmod 755 "$ROOT/init"

( cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet ) | gzip -1 > "$RUN/initrd.gz"
log "initramfs: $(du -h "$RUN/initrd.gz" | cut -f1) gz, $(du -sh "$ROOT" | cut -f1) unpacked"

# ---------------------------------------------------------------- ISO
ISO=$RUN/iso
mkdir -p "$ISO/isolinux"
cp "$SKEL/isolinux.bin" "$SKEL/ldlinux.c32" "$ISO/isolinux/"
ln "$SKEL/vmlinuz" "$ISO/vmlinuz" 2>/dev/null || cp "$SKEL/vmlinuz" "$ISO/vmlinuz"
mv "$RUN/initrd.gz" "$ISO/initrd.gz"
# clearcpuid=xsaves,xsavec: Bochs 2.7 reports a wrong compacted XSAVE size in
#   CPUID(0xD,1).EBX (2688 = the standard-format size instead of 2432); Linux >= 5.19 then
#   fails its "XSAVE consistency" check and disables XSAVE -> no AVX/AVX2/AVX-512 at all.
#   Hiding XSAVES/XSAVEC from the kernel makes it use the standard format, which is right.
# GUEST_ACPI=0 adds acpi=off: saves ~1-2 s of boot; 'poweroff -f' then only halts the CPU and
#   the harness kills Bochs once the marker line is seen (it does that in any case).
# cryptomgr.notests: skip crypto self-tests (saves ~20 s of wall time in Bochs).
# lpj: skip the BogoMIPS delay-loop calibration; tsc=reliable: no clocksource watchdog.
ACPI_OPT=""; [ "${GUEST_ACPI:-1}" = 0 ] && ACPI_OPT="acpi=off"
KCMD="clearcpuid=xsaves,xsavec $ACPI_OPT cryptomgr.notests console=ttyS0,115200 quiet loglevel=3 mitigations=off nokaslr lpj=1000000 tsc=reliable no_timer_check
 noreplace-smp nosmp maxcpus=1 audit=0 selinux=0 apparmor=0 nowatchdog nmi_watchdog=0 panic=-1
 rdinit=/init ${KERNEL_CMDLINE_EXTRA:-}"
KCMD=$(echo $KCMD)
cat > "$ISO/isolinux/isolinux.cfg" <<EOF
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND $KCMD
EOF
genisoimage -quiet -o "$RUN/boot.iso" -b isolinux/isolinux.bin -c isolinux/boot.cat \
  -no-emul-boot -boot-load-size 4 -boot-info-table -J -R "$ISO" 2>"$RUN/genisoimage.log" ||
  { cat "$RUN/genisoimage.log" >&2; die "genisoimage failed"; }
rm -rf "$ISO" "$ROOT"

# ---------------------------------------------------------------- bochsrc
SERIAL=$RUN/serial.log
BLOG=$RUN/bochs.log
cat > "$RUN/bochsrc" <<EOF
config_interface: textconfig
display_library: rfb, options="timeout=0"
cpu: model=$CPU_MODEL, count=1, ips=$IPS, reset_on_triple_fault=0, ignore_bad_msrs=1
memory: guest=$MEM_MB, host=$(( MEM_MB < 2048 ? MEM_MB : 2048 ))
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
pci: enabled=1, chipset=i440fx
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=cdrom, path="$RUN/boot.iso", status=inserted
boot: cdrom
floppy_bootsig_check: disabled=1
clock: sync=none, time0=local
com1: enabled=1, mode=file, dev="$SERIAL"
mouse: enabled=0
keyboard: type=mf
port_e9_hack: enabled=0
log: $BLOG
panic: action=fatal
error: action=report
info: action=report
debug: action=ignore
EOF

# Debian's bochs is built with the internal debugger, which stops at the first
# instruction: feed it "continue" (and "quit" for when the simulation stops).
printf 'continue\nquit\n' > "$RUN/debugger.rc"

# ---------------------------------------------------------------- run
: > "$SERIAL"
log "starting bochs (timeout ${TIMEOUT_S}s)"
START=$(date +%s.%N)
( cd "$RUN" && exec bochs -q -f "$RUN/bochsrc" -rc "$RUN/debugger.rc" </dev/null >"$RUN/bochs.stdout" 2>&1 ) &
BOCHS_PID=$!

status=""; T_PROG=""
while :; do
  if [ -z "$T_PROG" ] && grep -aq '^BOCHS-PROGRAM-START' "$SERIAL" 2>/dev/null; then T_PROG=$(date +%s.%N); fi
  if grep -aq '^BOCHS-EXIT-CODE=' "$SERIAL" 2>/dev/null; then status=done; break; fi
  if grep -aq 'Kernel panic' "$SERIAL" 2>/dev/null; then sleep 1; status=panic; break; fi
  if ! kill -0 "$BOCHS_PID" 2>/dev/null; then
    grep -aq '^BOCHS-EXIT-CODE=' "$SERIAL" && status=done || status=bochs-exited; break
  fi
  now=$(date +%s.%N)
  if awk -v a="$now" -v b="$START" -v t="$TIMEOUT_S" 'BEGIN{exit !(a-b>t)}'; then status=timeout; break; fi
  sleep 0.5
done
# give bochs a moment to power off by itself (ACPI soft-off), then make sure it is gone
for _ in $(seq 1 4); do kill -0 "$BOCHS_PID" 2>/dev/null || break; sleep 0.25; done
if kill -0 "$BOCHS_PID" 2>/dev/null; then kill "$BOCHS_PID" 2>/dev/null || true; sleep 0.5; kill -9 "$BOCHS_PID" 2>/dev/null || true; fi
wait "$BOCHS_PID" 2>/dev/null || true
BOCHS_PID=""
END=$(date +%s.%N)
ELAPSED=$(awk -v a="$END" -v b="$START" 'BEGIN{printf "%.1f", a-b}')

if [ "${VERBOSE:-0}" = 1 ]; then
  echo "[bochs-avx512] ---- full serial log ----" >&2; tr -d '\r' < "$SERIAL" >&2; echo "[bochs-avx512] ---- end ----" >&2
fi

# program output = everything between the start marker and the exit marker
tr -d '\r' < "$SERIAL" | awk '
  /^BOCHS-EXIT-CODE=/ {exit}
  started {buf = buf $0 "\n"}
  /^BOCHS-PROGRAM-START$/ {started=1}
  END {sub(/\n\n$/, "\n", buf); printf "%s", buf}'

case $status in
  done)
    rc=$(tr -d '\r' < "$SERIAL" | sed -n 's/^BOCHS-EXIT-CODE=\([0-9]*\).*/\1/p' | head -1)
    [ -n "$T_PROG" ] || T_PROG=$END
    log "bochs wall time ${ELAPSED}s (boot until program start: $(awk -v a="$T_PROG" -v b="$START" 'BEGIN{printf "%.1f", a-b}')s, program + shutdown: $(awk -v a="$END" -v b="$T_PROG" 'BEGIN{printf "%.1f", a-b}')s), program exit code $rc"
    exit "${rc:-125}" ;;
  timeout)
    echo "[bochs-avx512] TIMEOUT after ${TIMEOUT_S}s (TIMEOUT_S); serial log tail:" >&2
    tail -n 20 "$SERIAL" | tr -d '\r' >&2
    exit 124 ;;
  *)
    echo "[bochs-avx512] FAILED ($status) after ${ELAPSED}s; serial log tail / bochs log tail:" >&2
    tail -n 30 "$SERIAL" | tr -d '\r' >&2
    grep -a -E 'PANIC|ERROR|\[.*\] e' "$BLOG" 2>/dev/null | tail -n 20 >&2 || true
    tail -n 10 "$RUN/bochs.stdout" >&2 || true
    exit 125 ;;
esac
