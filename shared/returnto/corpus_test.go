package returnto

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// corpusTokens stand for characters a text file cannot hold plainly.
var corpusTokens = strings.NewReplacer("{TAB}", "\t", "{CR}", "\r", "{LF}", "\n", "{NUL}", "\x00", "{SP}", " ", "{EMPTY}", "")

// TestOpenRedirectCorpus (S15) runs the checked-in open-redirect corpus
// (testdata/open-redirect.txt: public bypass payloads, written as data)
// against the validator: every payload is rejected, every positive
// control accepted.
func TestOpenRedirectCorpus(t *testing.T) {
	a, err := ParseOrigins("https://app.example.com,http://localhost:3000")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/open-redirect.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rejected, allowed int
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		raw, allow := strings.CutPrefix(line, "allow ")
		raw = corpusTokens.Replace(raw)
		u, err := a.Check(raw)
		switch {
		case allow && err != nil:
			t.Errorf("line %d: positive control %q rejected: %v", n, raw, err)
		case allow:
			allowed++
		case err == nil:
			t.Errorf("line %d: payload %q accepted as %v", n, raw, u)
		default:
			rejected++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if rejected < 100 || allowed == 0 {
		t.Fatalf("corpus has %d payloads and %d positive controls; want at least 100 and 1", rejected, allowed)
	}
	t.Logf("%d payloads rejected, %d positive controls accepted", rejected, allowed)
}
