package httpapi

import "testing"

// FuzzParseQuery: the callback query parser never panics and never
// returns a parameter with more than one value (S11).
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"code=a&state=b", "state=a&state=b", "a=%zz", "a;b", "&&=&", "state=a%26state%3Db"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := ParseQuery(raw)
		if err != nil {
			return
		}
		for k, v := range q {
			if len(v) != 1 {
				t.Fatalf("%q has %d values", k, len(v))
			}
		}
	})
}
