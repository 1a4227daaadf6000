package client

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// heavy are modules of oauthbroker's root module (its browser tests, the
// Lambda emulator, the local KMS) that an app importing the client must
// not inherit.
var heavy = []string{
	"github.com/chromedp/",
	"github.com/aws/aws-lambda-runtime-interface-emulator",
	"github.com/nsmithuk/local-kms",
	"github.com/oauthbroker/oauthbroker ", // the root module itself
	"github.com/oauthbroker/oauthbroker@",
}

// TestModuleGraphIsLight fails if the client module's graph (what `go get`
// of the client adds to an app's go.mod and go.sum) holds one of the
// root module's heavy requirements.
func TestModuleGraphIsLight(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goCmd, "mod", "graph").CombinedOutput()
	if err != nil {
		t.Fatalf("go mod graph: %v\n%s", err, out)
	}
	graph := string(out)
	if !strings.Contains(graph, "github.com/aws/aws-sdk-go-v2@") {
		t.Fatalf("go mod graph does not list aws-sdk-go-v2: is this the client module?\n%s", graph)
	}
	for _, line := range strings.Split(graph, "\n") {
		for _, h := range heavy {
			if strings.Contains(line+" ", h) {
				t.Errorf("the client module's graph holds %s: %s", strings.TrimRight(h, " @/"), line)
			}
		}
	}
}
