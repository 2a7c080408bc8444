package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoryLimit(t *testing.T) {
	noCgroup := func() int64 { return 0 }
	cgroup512 := func() int64 { return 512 << 20 }
	auto512 := int64(float64(cgroup512()) * memoryLimitShare)
	tests := []struct {
		flag, env string
		cgroup    func() int64
		want      int64
		err       string
	}{
		{flag: "auto", cgroup: noCgroup, want: 0},
		{flag: "auto", cgroup: cgroup512, want: auto512},
		{flag: "", cgroup: cgroup512, want: auto512},
		{flag: "auto", env: "300MiB", cgroup: cgroup512, want: 0}, // the runtime already applies GOMEMLIMIT
		{flag: "off", cgroup: cgroup512, want: 0},
		{flag: "256MiB", cgroup: cgroup512, want: 256 << 20},
		{flag: "1GiB", env: "300MiB", cgroup: noCgroup, want: 1 << 30},
		{flag: "300MB", cgroup: noCgroup, want: 300e6},
		{flag: "104857600", cgroup: noCgroup, want: 100 << 20},
		{flag: "1.5GiB", cgroup: noCgroup, want: 3 << 29},
		{flag: "1MiB", cgroup: noCgroup, err: "at least 16MiB"},
		{flag: "lots", cgroup: noCgroup, err: "--memory-limit must be"},
		{flag: "-5GiB", cgroup: noCgroup, err: "--memory-limit must be"},
	}
	for _, tt := range tests {
		got, err := memoryLimit(tt.flag, tt.env, tt.cgroup)
		if tt.err != "" {
			require.Error(t, err, tt.flag)
			assert.Contains(t, err.Error(), tt.err)
			assert.Equal(t, exitUsage, exitCode(err), tt.flag)
			continue
		}
		require.NoError(t, err, tt.flag)
		assert.Equal(t, tt.want, got, "%q env %q", tt.flag, tt.env)
	}
}
