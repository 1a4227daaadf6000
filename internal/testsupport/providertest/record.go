package providertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
)

// Recorded is one request the server received.
type Recorded struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte     // raw body
	Query  url.Values // parameters in the URL
	Params url.Values // all parameters: URL, form body and JSON body (string values) together
	Status int        // status answered; 0 while the request is in flight
}

// String helps in test failure messages.
func (r Recorded) String() string {
	return fmt.Sprintf("%s %s -> %d", r.Method, r.Path, r.Status)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// record reads the body (at most 1 MiB, as the server does), records the
// request and hands it on with the body restored.
func (s *Server) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		query, _ := url.ParseQuery(r.URL.RawQuery)
		rec := Recorded{
			Method: r.Method,
			Path:   r.URL.Path,
			Header: r.Header.Clone(),
			Body:   body,
			Query:  query,
			Params: cloneValues(query),
		}
		for k, vs := range bodyParams(r.Header.Get("Content-Type"), body) {
			rec.Params[k] = append(rec.Params[k], vs...)
		}
		s.mu.Lock()
		i := len(s.requests)
		s.requests = append(s.requests, rec)
		s.mu.Unlock()

		sw := &statusWriter{ResponseWriter: w}
		if err != nil {
			http.Error(sw, "request body too large", http.StatusRequestEntityTooLarge)
		} else {
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(sw, r)
		}
		s.mu.Lock()
		s.requests[i].Status = sw.status
		s.mu.Unlock()
	})
}

// bodyParams parses a form or JSON body leniently, for recording.
func bodyParams(contentType string, body []byte) url.Values {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/x-www-form-urlencoded":
		v, _ := url.ParseQuery(string(body))
		return v
	case "application/json":
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			return nil
		}
		v := url.Values{}
		for k, x := range m {
			if str, ok := x.(string); ok {
				v.Add(k, str)
			}
		}
		return v
	}
	return nil
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}
