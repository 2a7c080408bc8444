package main

/*
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// Capabilities belong to each thread, and capset changes only the caller's.
// glibc broadcasts setuid and friends to every thread with a signal; for
// capset nothing does, and Go's AllThreadsSyscall refuses to run in a cgo
// binary. So this does what glibc does: a signal to every other thread, whose
// handler drops the capabilities of the thread it interrupts.

enum {
	DROP_BOUNDING = 1, // empty the bounding set (needs CAP_SETPCAP)
	DROP_SETS     = 2, // clear effective, permitted and inheritable
	DROP_AMBIENT  = 4,
	NO_NEW_PRIVS  = 8, // no exec can gain privileges back
};

static int otas_drop_flags;
static atomic_int otas_drop_pending;
static atomic_int otas_drop_failed;

// otas_drop_self drops what flags say from the calling thread. It makes only
// system calls, so it is safe in a signal handler.
static int otas_drop_self(int flags) {
	int failed = 0;
	if (flags & DROP_BOUNDING) {
		for (int c = 0; c <= 63; c++) {
			// EINVAL past the last capability the kernel knows; EPERM without
			// CAP_SETPCAP (a setcap'd binary run by a user).
			if (syscall(SYS_prctl, PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno == EINVAL) break;
		}
	}
	if (flags & DROP_AMBIENT) {
		if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) failed = 1;
	}
	if (flags & NO_NEW_PRIVS) {
		if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) failed = 1;
	}
	if (flags & DROP_SETS) {
		struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
		struct __user_cap_data_struct d[2];
		memset(d, 0, sizeof d);
		if (syscall(SYS_capset, &h, d) != 0) failed = 1;
	}
	return failed;
}

static void otas_drop_handler(int sig, siginfo_t *info, void *uc) {
	// Only our own tgkill: a child's exit is no request to drop.
	if (info->si_code != SI_TKILL || info->si_pid != getpid()) return;
	int saved = errno;
	if (otas_drop_self(otas_drop_flags)) atomic_fetch_add(&otas_drop_failed, 1);
	atomic_fetch_sub(&otas_drop_pending, 1);
	errno = saved;
}

// otas_drop_all_threads drops from every thread of the process and returns 0,
// or -1 when a thread failed or did not answer within a second.
static int otas_drop_all_threads(int flags, int sig) {
	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = otas_drop_handler;
	// Go threads run signal handlers on their alternate signal stacks.
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigfillset(&sa.sa_mask);
	otas_drop_flags = flags;
	atomic_store(&otas_drop_pending, 0);
	atomic_store(&otas_drop_failed, 0);
	if (sigaction(sig, &sa, &old) != 0) return -1;

	pid_t pid = getpid(), self = (pid_t)syscall(SYS_gettid);
	DIR *dir = opendir("/proc/self/task");
	if (dir == NULL) { sigaction(sig, &old, NULL); return -1; }
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		pid_t tid = (pid_t)atoi(e->d_name);
		if (tid <= 0 || tid == self) continue;
		atomic_fetch_add(&otas_drop_pending, 1);
		// A thread that exited meanwhile has nothing left to drop.
		if (syscall(SYS_tgkill, pid, tid, sig) != 0) atomic_fetch_sub(&otas_drop_pending, 1);
	}
	closedir(dir);
	int failed = otas_drop_self(flags);
	struct timespec pause = {0, 1000000};
	for (int i = 0; i < 1000 && atomic_load(&otas_drop_pending) > 0; i++) nanosleep(&pause, NULL);
	int late = atomic_load(&otas_drop_pending) > 0;
	sigaction(sig, &old, NULL);
	return (failed || late || atomic_load(&otas_drop_failed) > 0) ? -1 : 0;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// The main goroutine stays on the main thread until privileges are dropped.
// Go keeps the signal mask the process started with on that thread, and a
// service manager or shell may start us with every real-time signal blocked;
// so the broadcast cannot reach it, and the drop must run on it instead.
func init() { runtime.LockOSThread() }

// dropSignal carries the request to drop to each thread. It is SIGCHLD
// because Go unblocks it on every thread whatever mask the process started
// with, and nothing here waits for it: os/exec reaps children with wait4.
const dropSignal = C.SIGCHLD

const (
	dropBounding = C.DROP_BOUNDING
	dropSets     = C.DROP_SETS
	dropAmbient  = C.DROP_AMBIENT
	noNewPrivs   = C.NO_NEW_PRIVS
)

// dropPrivileges runs once the capture handles are open: it switches to
// userName when given (supplementary groups, group, then user), then clears
// every capability set of every thread (effective, permitted, inheritable,
// ambient, and the bounding set when allowed) and forbids regaining any
// through exec. Open handles keep working: reading a packet socket needs no
// privilege.
//
// Call it from the main goroutine, which init locked to the main thread; it
// unlocks it.
func dropPrivileges(userName string) error {
	defer runtime.UnlockOSThread()
	if userName != "" {
		uid, gid, groups, err := lookupUser(userName)
		if err != nil {
			return err
		}
		// The bounding set can be emptied only while CAP_SETPCAP is held.
		if err := dropEverywhere(dropBounding|dropAmbient|noNewPrivs, "CapBnd", "CapAmb"); err != nil {
			return err
		}
		// Go (through glibc in a cgo binary) applies these to every thread.
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("--user %s: setgroups: %w", userName, err)
		}
		if err := syscall.Setgid(gid); err != nil {
			return fmt.Errorf("--user %s: setgid %d: %w", userName, gid, err)
		}
		if err := syscall.Setuid(uid); err != nil {
			return fmt.Errorf("--user %s: setuid %d: %w", userName, uid, err)
		}
	}
	return dropEverywhere(dropBounding|dropSets|dropAmbient|noNewPrivs, "CapInh", "CapPrm", "CapEff", "CapAmb")
}

// dropEverywhere drops on every thread until every thread shows the sets
// named empty: a thread the runtime starts meanwhile copies its parent's.
func dropEverywhere(flags C.int, sets ...string) error {
	var err error
	for range 3 {
		if err = dropAllThreads(flags); err == nil {
			if err = checkNoCapabilities(sets...); err == nil {
				return nil
			}
		}
	}
	return err
}

func dropAllThreads(flags C.int) error {
	if C.otas_drop_all_threads(flags, dropSignal) != 0 {
		return errors.New("dropping capabilities: a thread could not drop them (does it block real-time signals?)")
	}
	return nil
}

// lookupUser resolves a user name (or number) to its ids and groups.
func lookupUser(name string) (uid, gid int, groups []int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, numErr := strconv.Atoi(name); numErr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return 0, 0, nil, fmt.Errorf("--user %s: %w", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	groups = []int{gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.Atoi(s); err == nil && g != gid {
				groups = append(groups, g)
			}
		}
	}
	return uid, gid, groups, nil
}

// checkNoCapabilities reads every thread's status and fails if any still holds
// a capability in one of the sets named (CapEff, CapPrm, ...).
func checkNoCapabilities(sets ...string) error {
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		return fmt.Errorf("dropping capabilities: cannot list threads: %v", err)
	}
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread has exited
			}
			return fmt.Errorf("dropping capabilities: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			name, val, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			if slices.Contains(sets, name) {
				if v := strings.TrimSpace(val); strings.Trim(v, "0") != "" {
					return fmt.Errorf("dropping capabilities: %s of %s is still %s", name, filepath.Dir(path), v)
				}
			}
		}
	}
	return nil
}
