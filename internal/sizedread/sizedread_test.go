package sizedread

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadAll(t *testing.T) {
	data := strings.Repeat("0123456789", 1000)
	for _, size := range []int64{-1, 0, 10, 9999, 10000, 10001, 1 << 40} {
		got, err := ReadAll(iotest.OneByteReader(strings.NewReader(data)), size)
		require.NoError(t, err, size)
		assert.Equal(t, data, string(got), size)
	}
	got, err := ReadAll(strings.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, len(data)+1, cap(got), "an exact hint is one allocation")

	boom := errors.New("boom")
	got, err = ReadAll(io.MultiReader(bytes.NewReader([]byte("ab")), iotest.ErrReader(boom)), 10)
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, "ab", string(got), "what was read before the error is kept")
}

// ReadAllInto appends to what b holds, into its room first, whatever its
// capacity.
func TestReadAllInto(t *testing.T) {
	data := strings.Repeat("0123456789", 1000)
	for _, room := range []int{0, 1, 10, 9999, 10000, 10001, 20000} {
		b := append(make([]byte, 0, 3+room), "abc"...)
		got, err := ReadAllInto(b, iotest.OneByteReader(strings.NewReader(data)))
		require.NoError(t, err, room)
		assert.Equal(t, "abc"+data, string(got), room)
		if room > len(data) {
			assert.Same(t, &b[0], &got[0], "read into the room given (%d)", room)
		}
	}
}
