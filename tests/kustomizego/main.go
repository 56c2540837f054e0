// Command kustomizego runs the Go code tagpin's kustomize handling must agree with, for its
// differential tests (tests/support/kustomizego.py builds it against Debian's Go sources):
//
//	kustomizego isremote  stdin: one JSON string per line; stdout per line: "remote" where
//	                      kustomize's loader.IsRemoteFile (api/internal/loader/fileloader.go,
//	                      v0.21.1) is true, i.e. kustomize fetches the path over HTTP, else
//	                      "invalid" where url.Parse fails, else "local".
//	kustomizego klogerr   prints stdin as an error the way kubectl 1.32 does on a failed
//	                      command: k8s.io/component-base/cli/run.go logs it with
//	                      klog.ErrorS(err, "command failed"); exits 1.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"

	"k8s.io/klog/v2"
)

// IsRemoteFile as kustomize has it.
func IsRemoteFile(path string) bool {
	u, err := url.Parse(path)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https")
}

func main() {
	switch os.Args[1] {
	case "isremote":
		lines := bufio.NewScanner(os.Stdin)
		lines.Buffer(make([]byte, 1<<20), 1<<20)
		for lines.Scan() {
			var path string
			if err := json.Unmarshal(lines.Bytes(), &path); err != nil {
				panic(err)
			}
			switch _, err := url.Parse(path); {
			case IsRemoteFile(path):
				fmt.Println("remote")
			case err != nil:
				fmt.Println("invalid")
			default:
				fmt.Println("local")
			}
		}
	case "klogerr":
		text, err := io.ReadAll(os.Stdin)
		if err != nil {
			panic(err)
		}
		klog.ErrorS(errors.New(string(text)), "command failed")
		klog.Flush()
		os.Exit(1)
	default:
		panic("unknown command " + os.Args[1])
	}
}
