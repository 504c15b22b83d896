package vssadmin

import (
	"regexp"
	"strings"
)

// valueOptions take a value; boolOptions do not.
var valueOptions = map[string]bool{
	"for": true, "on": true, "maxsize": true, "shadow": true, "set": true, "autoretry": true,
	"provider": true, "format": true, "state-dir": true, "socket": true, "config": true,
}

var boolOptions = map[string]bool{
	"oldest": true, "all": true, "quiet": true, "forcedismount": true, "nowriters": true, "verbose": true, "embedded": true, "help": true,
}

var verbs = map[string]bool{
	"create": true, "list": true, "delete": true, "add": true, "resize": true, "revert": true, "query": true,
	"shadow": true, "shadows": true, "writers": true, "providers": true, "volumes": true,
	"shadowstorage": true, "reverts": true, "help": true,
}

var winOption = regexp.MustCompile(`^/([A-Za-z][A-Za-z-]*)(=(.*))?$`)

// Normalize turns the Windows syntax into the GNU one the parser takes:
// verbs in any case, "/For=X" into "--for=X", "/Quiet" into "--quiet". A
// word that only looks like an option (a path such as /all given as the
// value of --for) is left alone.
func Normalize(args []string) []string {
	out := make([]string, 0, len(args))
	expectValue := false
	words := 0
	for _, a := range args {
		if expectValue {
			out = append(out, a)
			expectValue = false
			continue
		}
		if m := winOption.FindStringSubmatch(a); m != nil {
			name := strings.ToLower(m[1])
			if valueOptions[name] || boolOptions[name] {
				if m[2] != "" {
					out = append(out, "--"+name+"="+m[3])
				} else {
					out = append(out, "--"+name)
					expectValue = valueOptions[name]
				}
				continue
			}
		}
		if strings.HasPrefix(a, "--") {
			name, val, hasVal := strings.Cut(a[2:], "=")
			name = strings.ToLower(name)
			if hasVal {
				out = append(out, "--"+name+"="+val)
			} else {
				out = append(out, "--"+name)
				expectValue = valueOptions[name]
			}
			continue
		}
		if !strings.HasPrefix(a, "-") && words < 2 && verbs[strings.ToLower(a)] {
			out = append(out, strings.ToLower(a))
			words++
			continue
		}
		out = append(out, a)
	}
	return out
}
