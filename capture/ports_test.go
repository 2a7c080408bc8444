package capture

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    Ports
		bpf     string
		wantErr string
	}{
		{in: "8000", want: Ports{{8000, 8000}}, bpf: "tcp and (port 8000)"},
		{in: "8000,8080", want: Ports{{8000, 8000}, {8080, 8080}}, bpf: "tcp and (port 8000 or port 8080)"},
		{in: "8000, 8080-8089", want: Ports{{8000, 8000}, {8080, 8089}}, bpf: "tcp and (port 8000 or portrange 8080-8089)"},
		{in: "0", wantErr: "not a port number"},
		{in: "65536", wantErr: "not a port number"},
		{in: "http", wantErr: "not a port number"},
		{in: "9000-8000", wantErr: "greater than the last"},
		{in: "8000-", wantErr: "not a port number"},
		{in: ",", wantErr: "no port"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePorts(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.bpf, got.BPF())
		})
	}
}

func TestPortsContains(t *testing.T) {
	ps, err := ParsePorts("80,8080-8089")
	require.NoError(t, err)
	for p, want := range map[uint16]bool{80: true, 81: false, 8079: false, 8080: true, 8085: true, 8089: true, 8090: false} {
		assert.Equal(t, want, ps.Contains(p), "port %d", p)
	}
	assert.True(t, Ports(nil).Contains(1234), "no ports means every port")
	assert.Equal(t, "tcp", Ports(nil).BPF())
	assert.Equal(t, "80,8080-8089", ps.String())
}
