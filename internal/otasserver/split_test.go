package otasserver

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// splitObject and splitEventsAt agree with encoding/json on valid JSON, the only
// input they are given.
func TestSplitAgreesWithEncodingJSON(t *testing.T) {
	objects := []string{
		`{}`,
		` { "a" : 1 , "b":[1,{"c":"}"}],"d":"x\"y\\","e":null,"f":true,"g":-1.5e3 } `,
		`{"esc\u0061ped":"v","a":{"b":{"c":[[],{}]}},"s":"[{,:"}`,
		"{\n\t\"n\":\r\n0}",
		`{"dup":1,"dup":2}`,
	}
	for _, obj := range objects {
		require.True(t, json.Valid([]byte(obj)), obj)
		members, err := splitObject([]byte(obj))
		require.NoError(t, err, obj)
		got := map[string]string{}
		for _, m := range members {
			got[m.name] = string(m.raw)
		}
		var want map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(obj), &want))
		assert.Len(t, got, len(want), obj)
		for k, v := range want {
			assert.Equal(t, string(v), got[k], "%s: member %q", obj, k)
		}
	}
	for _, notObject := range []string{`[]`, `"x"`, `1`, `null`} {
		_, err := splitObject([]byte(notObject))
		assert.Error(t, err, notObject)
	}

	arr := ` [ {"a":[1,2]} , "x,]" ,3,[[]],null, { "b" : {"c":"}"} } ] `
	elems, end, err := splitEventsAt([]byte(arr), 1)
	require.NoError(t, err)
	assert.Equal(t, len(arr)-1, end)
	var want []json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(arr), &want))
	require.Len(t, elems, len(want))
	for i := range want {
		assert.Equal(t, string(want[i]), string(elems[i].raw))
		assert.Equal(t, want[i][0] != '{', elems[i].err != nil, "element %d is an object", i)
	}
	require.Len(t, elems[5].members, 1)
	assert.Equal(t, `{"c":"}"}`, string(elems[5].members[0].raw))
	elems, _, err = splitEventsAt([]byte(`[]`), 0)
	require.NoError(t, err)
	assert.Empty(t, elems)
	_, _, err = splitEventsAt([]byte(`{}`), 0)
	assert.Error(t, err)

	_, err = batchEvents([]byte(`{"events":[{"a":1}`))
	assert.Error(t, err, "invalid JSON is refused before splitting")
	_, err = batchEvents([]byte(`{"other":[]}`))
	assert.Error(t, err, "no events array")
	evs, err := batchEvents([]byte(`{"events":[{"a":1},{"b":2}]}`))
	require.NoError(t, err)
	assert.Len(t, evs, 2)
}

func TestMemberValue(t *testing.T) {
	v, ok := memberValue([]byte(`{"a":1,"event_id":"x","b":{"event_id":"inner"},"event_id":"y"}`), "event_id")
	require.True(t, ok)
	assert.Equal(t, `"y"`, string(v), "the last duplicate, as encoding/json")
	_, ok = memberValue([]byte(`{"a":{"event_id":1}}`), "event_id")
	assert.False(t, ok, "only top-level members")
}
