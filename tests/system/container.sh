#!/usr/bin/env bash
# tests/system/container.sh: boots a real systemd as PID 1 in a private container made from this
# machine's own root file system, and runs commands in it. Reusable by any test that needs systemd
# (the host has no systemd running). Needs root, unshare/nsenter (util-linux), overlayfs and a
# cgroup2 mount on the host (unified or hybrid layout).
#
#   container.sh boot DIR       boot; DIR (created, must not exist) keeps the state: pid (PID 1 of
#                               the container as seen from the host), console.log, cgroup (the
#                               container's cgroup on the host). Waits until the manager has
#                               finished starting up, prints "running" or "degraded" (failed units
#                               are listed) and exits 0; exits 1 when it did not come up.
#   container.sh exec DIR CMD...  runs CMD inside (all namespaces of PID 1, its root, an empty
#                               environment but PATH, and a cgroup of its own inside the container,
#                               /vhp-exec or $VHP_CGROUP, so the container's CPU accounting covers
#                               it). Exit status of CMD. Stdin/stdout/stderr are passed through.
#   container.sh stop DIR       powers the container off (SIGKILL after 20 s) and removes DIR.
#   container.sh root DIR       prints the path of the container's root as seen from the host
#                               (/proc/PID/root): copy files in and out through it.
#
# How it is built (all inside new mount, PID, cgroup, UTS, IPC and network namespaces, so nothing
# is mounted on the host and nothing survives PID 1): an overlay with the host's "/" as the lower
# layer and a tmpfs as the upper layer becomes the new root, so the container sees the installed
# system and this source tree and every write stays in memory; its own proc, sysfs and cgroup2; a
# tmpfs /dev with the basic nodes (no /dev/kmsg, no disks); pivot_root; then
# `exec /lib/systemd/systemd` with container=vhotplug-test in its environment, which makes systemd
# behave as in any container (no hardware units). Units that do not belong in such a container are
# masked: gettys, timers, udevd and its coldplug trigger (it would write to the host's /sys),
# networkd, timesyncd and daemons this host happens to have enabled.
# Mounts below / other than "/" itself (for example a separate /home) are not in the overlay.
set -u

die() { echo "container.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root"
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: container.sh boot|exec|stop|root DIR [CMD...]"
shift 2

pid_of() { cat "$dir/pid" 2>/dev/null; }
alive() { local p; p=$(pid_of) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# Units masked in the container: not applicable, or harmful (udev trigger would make the host's
# kernel send uevents for every device; udevd would act on them).
MASK=(getty@tty1.service console-getty.service serial-getty@.service getty.target
      systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
      systemd-udev-trigger.service systemd-udev-settle.service
      systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service
      systemd-timesyncd.service systemd-pstore.service systemd-hwdb-update.service
      timers.target apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer
      fstrim.timer man-db.timer e2scrub_reap.service postgresql.service cron.service
      systemd-logind.service systemd-user-sessions.service ssh.service)

# Runs in the new namespaces: builds the root and becomes systemd.
stage2() {
        set -e
        local m=$dir/mnt n
        mount --make-rprivate /
        mount -t tmpfs -o mode=0755 vhp-container "$m"
        mkdir "$m/upper" "$m/work" "$m/root"
        mount -t overlay -o "lowerdir=/,upperdir=$m/upper,workdir=$m/work" vhp-root "$m/root"
        local r=$m/root
        mount -t proc proc "$r/proc"
        mount -t sysfs sysfs "$r/sys"
        mount -t cgroup2 cgroup2 "$r/sys/fs/cgroup"
        mount -t tmpfs -o mode=0755,nosuid tmpfs "$r/dev"
        for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
                mknod -m 0666 "$r/dev/${n%%:*}" c "$(cut -d: -f2 <<<"$n")" "${n##*:}"
        done
        mkdir -m 0755 "$r/dev/pts" "$r/dev/net"
        mkdir -m 1777 "$r/dev/shm"
        mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts"
        ln -s pts/ptmx "$r/dev/ptmx"
        ln -s /proc/self/fd "$r/dev/fd"
        ln -s /proc/self/fd/0 "$r/dev/stdin"
        ln -s /proc/self/fd/1 "$r/dev/stdout"
        ln -s /proc/self/fd/2 "$r/dev/stderr"
        # The console is a file: systemd's status lines and early messages land in console.log.
        touch "$r/dev/console"
        mount --bind "$dir/console.log" "$r/dev/console"
        mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$r/run"
        mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"
        # The checkout and its build, when they live where the container has tmpfs of its own
        # (a clone in /tmp): bound in at the same paths, so tests run their tools inside.
        for n in "${keep[@]}"; do mkdir -p "$r$n" && mount --bind "$n" "$r$n"; done
        for n in "${MASK[@]}"; do ln -sf /dev/null "$r/etc/systemd/system/$n"; done
        rm -rf "$r/etc/systemd/system/timers.target.wants" "$r/etc/systemd/system/getty.target.wants"
        echo vhotplug-test >"$r/etc/hostname"
        hostname vhotplug-test
        cd "$r"
        mkdir -p .oldroot
        pivot_root . .oldroot
        umount -l /.oldroot
        rmdir /.oldroot
        exec env -i container=vhotplug-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
                /lib/systemd/systemd --show-status=no </dev/null >/dev/console 2>&1
}

case $cmd in
boot)
        [ ! -e "$dir" ] || die "$dir exists"
        mkdir -p "$dir/mnt" && : >"$dir/console.log" || exit 1
        dir=$(cd "$dir" && pwd)
        cg2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
        [ -n "$cg2" ] || die "no cgroup2 mount on the host"
        keep=()
        # The checkout and its build (tests/lib.sh exports both; the default is this checkout).
        for n in "${VHP_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}" ${VHP_BUILD:+"$VHP_BUILD"}; do
                case $n in /tmp/* | /run/*) keep+=("$n") ;; esac
        done
        cg=$cg2/vhp-container-$$
        mkdir "$cg" || die "cannot create cgroup $cg"
        echo "$cg" >"$dir/cgroup"
        # The cgroup namespace's root is the cgroup the unsharing process is in: a fresh one, so
        # the container's accounting covers exactly what runs in it.
        (
                echo "$BASHPID" >"$cg/cgroup.procs" || exit 1
                exec unshare --mount --pid --fork --cgroup --uts --ipc --net --kill-child \
                        bash -c "$(declare -f stage2); $(declare -p MASK dir keep); stage2" >>"$dir/console.log" 2>&1
        ) &
        unshare_pid=$!
        echo "$unshare_pid" >"$dir/unshare.pid"
        # PID 1 of the container is unshare's child.
        for _ in $(seq 200); do
                p=$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null | awk '{ print $1 }')
                [ -n "$p" ] && [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = /usr/lib/systemd/systemd ] && break
                kill -0 "$unshare_pid" 2>/dev/null || break
                p=
                sleep 0.05
        done
        [ -n "$p" ] || { tail -n 30 "$dir/console.log" >&2; die "systemd did not start"; }
        echo "$p" >"$dir/pid"
        # Wait for the manager to finish starting up, at most 60 s (systemctl fails until the
        # manager listens on its private socket).
        state=
        for _ in $(seq 600); do
                state=$("$0" exec "$dir" timeout 60 systemctl is-system-running --wait 2>/dev/null)
                case $state in running | degraded | maintenance | stopping) break ;; esac
                alive || break
                sleep 0.1
        done
        case $state in
        running) echo running ;;
        degraded)
                echo degraded
                "$0" exec "$dir" systemctl --no-legend --failed >&2 ;;
        *)
                tail -n 30 "$dir/console.log" >&2
                die "systemd did not come up (state '$state')" ;;
        esac
        ;;
exec)
        alive || die "container in $dir is not running"
        p=$(pid_of)
        # --cgroup enters the namespace, not a cgroup: move into one of our own inside the container.
        cg=${VHP_CGROUP:-vhp-exec}
        exec nsenter -t "$p" -m -p -C -u -i -n -r -w -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
                /bin/sh -c 'mkdir -p "/sys/fs/cgroup/$0" && echo $$ >"/sys/fs/cgroup/$0/cgroup.procs" && exec "$@"' \
                "$cg" "$@"
        ;;
root)
        alive || die "container in $dir is not running"
        echo "/proc/$(pid_of)/root"
        ;;
stop)
        if alive; then
                p=$(pid_of)
                # SIGRTMIN+4 asks systemd for poweroff; a container's PID 1 then exits.
                kill -s RTMIN+4 "$p" 2>/dev/null
                for _ in $(seq 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
                kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
                # The namespace ends only when every process in it is reaped; those started with
                # "exec" are children of an nsenter outside it: end the nsenters left (a stopped
                # one could not reap its child), whose children are then reaped inside.
                for n in $(pgrep -f "^nsenter -t $p "); do kill -9 "$n" 2>/dev/null; done
                for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        fi
        up=$(cat "$dir/unshare.pid" 2>/dev/null)
        if [ -n "$up" ]; then
                for _ in $(seq 50); do kill -0 "$up" 2>/dev/null || break; sleep 0.1; done
        fi
        cg=$(cat "$dir/cgroup" 2>/dev/null)
        if [ -n "$cg" ] && [ -d "$cg" ]; then
                # Once PID 1 is gone the kernel kills the rest of its PID namespace; the cgroups
                # empty as those processes are reaped. Depth-first: child cgroups first.
                for _ in $(seq 300); do
                        grep -q '^populated 0' "$cg/cgroup.events" 2>/dev/null && break
                        sleep 0.1
                done
                find "$cg" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
                rmdir "$cg" 2>/dev/null || echo "container.sh: cgroup $cg left behind" >&2
        fi
        rm -rf "$dir"
        ;;
*) die "unknown command $cmd" ;;
esac
