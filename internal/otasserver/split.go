package otasserver

import (
	"bytes"
	"encoding/json"
	"errors"
)

// The server validates each batch once with json.Valid and then only splits
// it: decoding every event into a map with encoding/json, as a first version
// did, cost more CPU than the uploader under test and capped what the upload
// benchmark could measure.

var errNotObject = errors.New("not a JSON object")

// member is one name and raw value of a JSON object.
type member struct {
	name string
	raw  []byte
}

// splitObject returns the members of the JSON object text obj, which must
// already be known valid JSON.
func splitObject(obj []byte) ([]member, error) {
	var slab []member
	members, _, err := splitObjectAt(obj, skipSpace(obj, 0), &slab)
	return members, err
}

// splitObjectAt splits the object that starts at b[i] and returns its members
// and the index just past it. The members are appended to *slab, which a batch
// shares among its events to allocate once rather than once per event.
func splitObjectAt(b []byte, i int, slab *[]member) ([]member, int, error) {
	first := len(*slab)
	end, err := eachMember(b, i, func(name string, raw []byte) bool {
		*slab = append(*slab, member{name: name, raw: raw})
		return true
	})
	if err != nil {
		return nil, end, err
	}
	out := *slab
	return out[first:len(out):len(out)], end, nil
}

// memberValue returns the raw value of the member called name of the valid
// JSON object obj (the last one, as encoding/json would).
func memberValue(obj []byte, name string) ([]byte, bool) {
	var value []byte
	found := false
	_, _ = eachMember(obj, skipSpace(obj, 0), func(n string, raw []byte) bool {
		if n == name {
			value, found = raw, true
		}
		return true
	})
	return value, found
}

// eachMember calls fn with each member of the object that starts at b[i],
// until fn returns false, and returns the index just past the object.
func eachMember(b []byte, i int, fn func(name string, raw []byte) bool) (int, error) {
	more := true
	return walkMembers(b, i, func(name string, at int) (int, error) {
		end := skipValue(b, at)
		if more {
			more = fn(name, b[at:end])
		}
		return end, nil
	})
}

// walkMembers walks the object that starts at b[i]: value is called with each
// member's name and the index its value starts at, and returns where the value
// ends (so a caller can split a value in the same pass). It returns the index
// just past the object.
func walkMembers(b []byte, i int, value func(name string, at int) (int, error)) (int, error) {
	if i >= len(b) || b[i] != '{' {
		return skipValue(b, i), errNotObject
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != '}' {
		end := skipValue(b, i)
		name, known := knownNames[string(b[i+1:end-1])]
		if !known {
			var err error
			if name, err = unquote(b[i:end]); err != nil {
				return end, err
			}
		}
		i = skipSpace(b, skipSpace(b, end)+1) // past ':'
		end, err := value(name, i)
		if err != nil {
			return end, err
		}
		if i = skipSpace(b, end); i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return i + 1, nil
}

// eventText is one element of a batch's events array: its text, and its
// members when it is an object (err when it is not).
type eventText struct {
	raw     []byte
	members []member
	err     error
}

// splitEventsAt splits the array that starts at b[i], splitting each object
// element in the same pass, and returns the index just past it.
func splitEventsAt(b []byte, i int) ([]eventText, int, error) {
	if i >= len(b) || b[i] != '[' {
		return nil, i, errors.New("not a JSON array")
	}
	out := []eventText{}
	slab := make([]member, 0, 24*64) // an event has about twenty members
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != ']' {
		members, end, err := splitObjectAt(b, i, &slab)
		out = append(out, eventText{raw: b[i:end], members: members, err: err})
		if i = skipSpace(b, end); i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return out, i + 1, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the valid JSON value that starts at i.
func skipValue(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i)
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
			if depth < 0 {
				return i
			}
		case ',', ' ', '\t', '\n', '\r', ':':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// knownNames maps the contract's field names, written plainly, to themselves:
// looking a name up does not allocate, making a string of it would. Read-only.
var knownNames = func() map[string]string {
	m := map[string]string{"events": "events", "event_id": "event_id"}
	for name := range fieldKinds {
		m[name] = name
	}
	return m
}()

// stringEnd returns the index of the closing quote of the string that opens at
// i, jumping between quotes: event bodies are long strings.
func stringEnd(b []byte, i int) int {
	for {
		j := bytes.IndexByte(b[i+1:], '"')
		if j < 0 {
			return len(b)
		}
		i += 1 + j
		// The quote is escaped when an odd number of backslashes precede it.
		n := 0
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return i
		}
	}
}

// unquote decodes a JSON string token, without encoding/json for plain ones.
func unquote(tok []byte) (string, error) {
	if len(tok) < 2 || tok[0] != '"' {
		return "", errors.New("not a JSON string")
	}
	if bytes.IndexByte(tok, '\\') < 0 {
		return string(tok[1 : len(tok)-1]), nil
	}
	var s string
	err := json.Unmarshal(tok, &s)
	return s, err
}
