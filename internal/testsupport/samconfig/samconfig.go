// Package samconfig reads samconfig.toml as the SAM CLI does: its tables by
// dotted name, and the parameter_overrides that `sam deploy` hands
// CloudFormation, so that tests deploy with the configuration operators do.
package samconfig

import (
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

// Parse reads a samconfig.toml into its tables by dotted name
// ("default.deploy.parameters"), top-level keys under "".
func Parse(data []byte) (map[string]map[string]any, error) {
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return nil, err
	}
	out := map[string]map[string]any{"": {}}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				name := strings.TrimPrefix(prefix+"."+k, ".")
				if out[name] == nil {
					out[name] = map[string]any{}
				}
				walk(name, sub)
			} else {
				out[prefix][k] = v
			}
		}
	}
	walk("", doc)
	return out, nil
}

// Overrides splits SAM's parameter_overrides (Key=Value or Key="Value"
// separated by spaces, or a list of such strings).
func Overrides(v any) (map[string]string, error) {
	var parts []string
	switch x := v.(type) {
	case string:
		parts = []string{x}
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("non-string entry %v", e)
			}
			parts = append(parts, s)
		}
	default:
		return nil, fmt.Errorf("unsupported parameter_overrides %v", v)
	}
	out := map[string]string{}
	for _, s := range parts {
		for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
			key, rest, ok := strings.Cut(s, "=")
			if !ok || key == "" || strings.ContainsAny(key, " ,\"") {
				return nil, fmt.Errorf("cannot parse %q: want Key=Value", s)
			}
			var val string
			if strings.HasPrefix(rest, `"`) {
				end := strings.Index(rest[1:], `"`)
				if end < 0 {
					return nil, fmt.Errorf("unterminated quote in %q", s)
				}
				val, s = rest[1:end+1], rest[end+2:]
			} else {
				val, s, _ = strings.Cut(rest, " ")
			}
			if _, dup := out[key]; dup {
				return nil, fmt.Errorf("%s given twice", key)
			}
			out[key] = val
		}
	}
	return out, nil
}

// DeployParameters returns the parameter_overrides of the module's
// samconfig.toml for `sam deploy --config-env env`.
func DeployParameters(env string) (map[string]string, error) {
	data, err := modroot.ReadFile("samconfig.toml")
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("samconfig.toml: %w", err)
	}
	table := env + ".deploy.parameters"
	v, ok := cfg[table]["parameter_overrides"]
	if !ok {
		return nil, fmt.Errorf("samconfig.toml: [%s] has no parameter_overrides", table)
	}
	ov, err := Overrides(v)
	if err != nil {
		return nil, fmt.Errorf("samconfig.toml: [%s] parameter_overrides: %w", table, err)
	}
	return ov, nil
}
