package vssadmin

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vsserr"
)

// formatTime renders a time as vssadmin does: 2/9/2014 1:36:04 PM, local.
func formatTime(t time.Time) string { return t.Local().Format("1/2/2006 3:04:05 PM") }

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jsonError is how errors are printed with --format json (on stderr).
type jsonError struct {
	Error struct {
		Code    string `json:"code"`
		Name    string `json:"name"`
		Text    string `json:"text"`
		Message string `json:"message"`
	} `json:"error"`
}

func (a *app) printJSONError(err error) {
	var je jsonError
	c := vsserr.CodeOf(err)
	je.Error.Code, je.Error.Name, je.Error.Text, je.Error.Message = c.Hex(), c.Name(), c.Text(), err.Error()
	b, _ := json.Marshal(je)
	fmt.Fprintln(a.env.Stderr, string(b))
}

func (a *app) noItems() error {
	if a.json() {
		return a.printJSON([]any{})
	}
	fmt.Fprintln(a.out(), "No items found that satisfy the query.")
	return nil
}

func volumeLine(path, name string) string { return "(" + path + ")" + name }

// createJSON is the JSON form of a made set.
type createJSON struct {
	SetID     string            `json:"set_id"`
	Shadows   []catalog.Shadow  `json:"shadows"`
	Evicted   []string          `json:"evicted,omitempty"`
	HoldMS    float64           `json:"hold_ms"`
	TotalMS   float64           `json:"total_ms"`
	NotFrozen map[string]string `json:"not_frozen,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (a *app) printCreate(res *service.CreateResult) error {
	if a.json() {
		cj := createJSON{SetID: res.Set.ID.String(), Shadows: res.Shadows, HoldMS: ms(res.Timings.Hold), TotalMS: ms(res.Timings.Total), NotFrozen: res.NotFrozen}
		for _, e := range res.Evicted {
			cj.Evicted = append(cj.Evicted, e.ID.String())
		}
		return a.printJSON(cj)
	}
	for _, s := range res.Shadows {
		fmt.Fprintf(a.out(), "Successfully created shadow copy for '%s'\n", s.VolumePath)
		fmt.Fprintf(a.out(), "    Shadow Copy ID: {%s}\n", s.ID)
		fmt.Fprintf(a.out(), "    Shadow Copy Volume Name: %s\n", s.ShadowPath)
	}
	if len(res.Shadows) > 1 {
		fmt.Fprintf(a.out(), "    Shadow Copy Set ID: {%s}\n", res.Set.ID)
	}
	for path, why := range res.NotFrozen {
		fmt.Fprintf(a.out(), "Note: %s was not frozen during the commit (%s): its shadow copy is consistent for writers, not crash-consistent.\n", path, why)
	}
	return nil
}

func (a *app) printShadows(shadows []catalog.Shadow) error {
	if a.json() {
		// One object a line, written by the fast encoder: listings can hold
		// thousands of shadows.
		b := make([]byte, 0, 64+len(shadows)*900)
		b = append(b, '[')
		for i := range shadows {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, "\n  "...)
			b = catalog.AppendShadowJSON(b, &shadows[i])
		}
		if len(shadows) > 0 {
			b = append(b, '\n')
		}
		b = append(b, "]\n"...)
		_, err := a.out().Write(b)
		return err
	}
	if len(shadows) == 0 {
		return a.noItems()
	}
	// Grouped by set, sets in order of creation.
	var order []string
	bySet := map[string][]catalog.Shadow{}
	for _, s := range shadows {
		k := s.SetID.String()
		if _, ok := bySet[k]; !ok {
			order = append(order, k)
		}
		bySet[k] = append(bySet[k], s)
	}
	w := a.out()
	for _, k := range order {
		set := bySet[k]
		fmt.Fprintf(w, "Contents of shadow copy set ID: {%s}\n", k)
		fmt.Fprintf(w, "   Contained %d shadow copies at creation time: %s\n", set[0].SetCount, formatTime(set[0].Created))
		for _, s := range set {
			fmt.Fprintf(w, "      Shadow Copy ID: {%s}\n", s.ID)
			fmt.Fprintf(w, "         Original Volume: %s\n", volumeLine(s.VolumePath, s.VolumeName))
			fmt.Fprintf(w, "         Shadow Copy Volume: %s\n", s.ShadowPath)
			fmt.Fprintf(w, "         Originating Machine: %s\n", s.OriginatingMachine)
			fmt.Fprintf(w, "         Service Machine: %s\n", s.ServiceMachine)
			if s.ExposedName != "" {
				fmt.Fprintf(w, "         Exposed Name: %s\n", s.ExposedName)
			}
			fmt.Fprintf(w, "         Provider: '%s'\n", providerDisplay(s.Provider))
			fmt.Fprintf(w, "         Type: %s\n", s.Context.Name())
			fmt.Fprintf(w, "         Attributes: %s\n", s.Attributes)
			if !s.CrashConsistent {
				fmt.Fprintf(w, "         Consistency: consistent for writers only (not crash-consistent)\n")
			}
		}
		fmt.Fprintln(w)
	}
	return nil
}

var displayNames = map[string]string{}

func init() {
	for _, p := range service.DefaultProviders() {
		displayNames[p.Info().Name] = p.Info().DisplayName
	}
}

func providerDisplay(name string) string {
	if d, ok := displayNames[name]; ok {
		return d
	}
	return name
}

var stateTexts = map[int]string{
	0: "Unknown", 1: "Stable", 2: "Waiting for freeze", 3: "Waiting for thaw", 4: "Waiting for post snapshot",
	5: "Waiting for completion",
}

func (a *app) printWriters(ws []service.WriterStatus) error {
	if a.json() {
		return a.printJSON(ws)
	}
	fmt.Fprintln(a.out(), "Waiting for responses. These may be delayed if a shadow copy is being prepared.")
	fmt.Fprintln(a.out())
	for _, w := range ws {
		text := w.StateText
		if text == "" {
			text = stateTexts[w.State]
			if w.State >= 6 {
				text = "Failed"
			}
		}
		fmt.Fprintf(a.out(), "Writer name: '%s'\n   Writer Id: {%s}\n   Writer Instance Id: {%s}\n   State: [%d] %s\n   Last error: %s\n\n",
			w.Name, w.ID, w.InstanceID, w.State, text, w.LastError)
	}
	return nil
}

type providerJSON struct {
	Name            string `json:"name"`
	DisplayName     string `json:"display_name"`
	ID              string `json:"id"`
	Type            string `json:"type"`
	Version         string `json:"version"`
	Method          string `json:"method"`
	CrashConsistent bool   `json:"crash_consistent"`
	Description     string `json:"description"`
}

func (a *app) printProviders(ps []provider.Info) error {
	if a.json() {
		out := []providerJSON{}
		for _, p := range ps {
			out = append(out, providerJSON{p.Name, p.DisplayName, p.ID.String(), p.Type.String(), p.Version, p.Method.String(), p.CrashConsistent, p.Description})
		}
		return a.printJSON(out)
	}
	for _, p := range ps {
		fmt.Fprintf(a.out(), "Provider name: '%s'\n   Provider type: %s\n   Provider Id: {%s}\n   Version: %s\n   Method: %s (%s)\n\n",
			p.DisplayName, p.Type, p.ID, p.Version, p.Method, p.Description)
	}
	return nil
}

func (a *app) printVolumes(vs []service.VolumeInfo) error {
	if a.json() {
		if vs == nil {
			vs = []service.VolumeInfo{}
		}
		return a.printJSON(vs)
	}
	for _, v := range vs {
		prov := v.Provider
		if prov == "" {
			prov = "none"
		}
		fmt.Fprintf(a.out(), "Volume path: %s\n    Volume name: %s\n    File system: %s (%s); default provider: %s\n", v.Path, v.Name, v.FSType, v.Kind, prov)
	}
	return nil
}

func pct(n, total uint64) string {
	if total == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d%%)", int(float64(n)*100/float64(total)+0.5))
}

func (a *app) printStorage(st []service.StorageInfo) error {
	if a.json() {
		if st == nil {
			st = []service.StorageInfo{}
		}
		return a.printJSON(st)
	}
	if len(st) == 0 {
		return a.noItems()
	}
	w := a.out()
	for _, s := range st {
		fmt.Fprintln(w, "Shadow Copy Storage association")
		fmt.Fprintf(w, "   For volume: %s\n", volumeLine(s.ForPath, `\\?\Volume{`+s.For.String()+`}\`))
		fmt.Fprintf(w, "   Shadow Copy Storage volume: %s\n", volumeLine(s.OnPath, `\\?\Volume{`+s.On.String()+`}\`))
		used := "unknown (volume not mounted)"
		if s.Used >= 0 {
			used = config.FormatBytes(uint64(s.Used)) + pct(uint64(s.Used), s.OnTotal)
		}
		fmt.Fprintf(w, "   Used Shadow Copy Storage space: %s\n", used)
		fmt.Fprintf(w, "   Allocated Shadow Copy Storage space: %s\n", used)
		max := "UNBOUNDED (100%)"
		if s.Max > 0 {
			max = config.FormatBytes(s.Max) + pct(s.Max, s.OnTotal)
		}
		fmt.Fprintf(w, "   Maximum Shadow Copy Storage space: %s\n", max)
		fmt.Fprintf(w, "   Shadow copies: %d\n\n", s.Shadows)
	}
	return nil
}

func (a *app) printReverts(rs []catalog.Revert) error {
	if a.json() {
		if rs == nil {
			rs = []catalog.Revert{}
		}
		return a.printJSON(rs)
	}
	if len(rs) == 0 {
		return a.noItems()
	}
	for _, r := range rs {
		p := ""
		if r.Total > 0 {
			p = fmt.Sprintf(" (%d%%)", r.Done*100/r.Total)
		}
		fmt.Fprintf(a.out(), "Revert in progress\n   Volume: %s\n   Shadow Copy ID: {%s}\n   Started: %s\n   Progress: %d of %d entries%s\n\n",
			r.VolumePath, r.ShadowID, formatTime(r.Started), r.Done, r.Total, p)
	}
	return nil
}
