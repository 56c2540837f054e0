module kustomizego

go 1.19

require (
	github.com/go-logr/logr v1.2.3
	k8s.io/klog/v2 v2.80.1
)

// Debian's library sources (golang-k8s-klog-dev): no module proxy.
replace (
	github.com/go-logr/logr => /usr/share/gocode/src/github.com/go-logr/logr
	k8s.io/klog/v2 => /usr/share/gocode/src/k8s.io/klog
)
