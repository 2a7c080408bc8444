//go:build !linux

package main

import (
	"fmt"
	"os/user"
	"strconv"
	"syscall"
)

// dropPrivileges switches to userName when given. Capabilities are Linux's;
// elsewhere there is nothing more to drop.
func dropPrivileges(userName string) error {
	if userName == "" {
		return nil
	}
	u, err := user.Lookup(userName)
	if err != nil {
		return fmt.Errorf("--user %s: %w", userName, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("--user %s: setgroups: %w", userName, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("--user %s: setgid: %w", userName, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("--user %s: setuid: %w", userName, err)
	}
	return nil
}
