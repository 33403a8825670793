package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	graphql "github.com/graph-gophers/graphql-go"
	gqlerrors "github.com/graph-gophers/graphql-go/errors"
)

// gqlRequest is the body of POST /graphql (GraphQL over HTTP).
type gqlRequest struct {
	Query         string         `json:"query"`
	OperationName string         `json:"operationName"`
	Variables     map[string]any `json:"variables"`
}

// admit authenticates r and takes one request from its rate limit. On
// failure it has written the response.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (identity, bool) {
	id, ok := s.authenticate(w, r)
	if !ok {
		return id, false
	}
	if refused := s.takeRequest(id, time.Now()); refused != nil {
		refused.writeHTTP(w)
		return id, false
	}
	return id, true
}

func (s *Server) serveGraphQL(w http.ResponseWriter, r *http.Request) {
	id, ok := s.admit(w, r)
	if !ok {
		return
	}
	start := time.Now()
	buf := getBuffer()
	defer putBuffer(buf)
	if status, msg := readBody(w, r, buf); status != 0 {
		writeError(w, status, "BAD_REQUEST", msg)
		return
	}
	eng, local := s.engineFor(id.tenant)
	if !local {
		s.forward(w, r, ForwardRequest{Kind: KindGraphQL, Tenant: id.tenant, Accept: r.Header.Get("Accept"), Body: buf.Bytes()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	s.answer(ctx, w, id.tenant, eng, r.Header.Get("Accept"), buf.Bytes(), start)
}

// answer executes the GraphQL request in body for tenant with eng and
// writes the response: for a client of this instance, or for another
// instance that forwarded it (ServeForwarded).
func (s *Server) answer(ctx context.Context, w http.ResponseWriter, tenant string, eng Engine, accept string, body []byte, start time.Time) {
	req, status, msg := decodeRequest(body)
	if status != 0 {
		writeError(w, status, "BAD_REQUEST", msg)
		return
	}
	info := &execInfo{tenant: tenant, engine: eng}
	ctx = withExec(ctx, info)

	var resp *graphql.Response
	if n := len(req.Query); n > MaxQueryLength {
		resp = &graphql.Response{Errors: []*gqlerrors.QueryError{{
			Message: "api: query: at most " + strconv.Itoa(MaxQueryLength) + " bytes, got " + strconv.Itoa(n) +
				"; pass long lists as variables",
			Extensions: map[string]any{"code": "LIMIT_EXCEEDED", "argument": "query", "limit": MaxQueryLength},
		}}}
	} else if vars, verr := coerceVariables(s.schema.AST(), req.Query, req.OperationName, req.Variables); verr != nil {
		resp = &graphql.Response{Errors: []*gqlerrors.QueryError{verr}}
	} else {
		resp = s.schema.Exec(ctx, req.Query, req.OperationName, vars)
		if len(resp.Errors) == 1 && resp.Errors[0].Message == "graphql-ws protocol header is missing" {
			// graphql-go's words for a subscription sent over HTTP.
			resp.Errors[0] = &gqlerrors.QueryError{Message: errNotSocket.Error(),
				Extensions: map[string]any{"code": "BAD_REQUEST"}}
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		resp = &graphql.Response{Errors: []*gqlerrors.QueryError{{
			Message:    "api: query timed out after " + s.cfg.QueryTimeout.String(),
			Extensions: map[string]any{"code": "TIMEOUT"},
		}}}
	}
	s.writeResponse(w, accept, resp)

	op := info.label()
	if op == "" {
		op = req.OperationName // the query did not parse
	}
	s.metrics.duration.WithLabelValues(s.metrics.ops.label(op)).Observe(time.Since(start).Seconds())
}

// tooLarge is the message of a body over MaxBodyBytes.
var tooLarge = "api: request body: at most " + strconv.Itoa(MaxBodyBytes) + " bytes (1 MiB)"

// readBody reads the body of r, of at most MaxBodyBytes, into buf. On
// failure it returns the HTTP status and message to answer.
func readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) (int, string) {
	if r.ContentLength > MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, tooLarge
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxBodyBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, tooLarge
		}
		return http.StatusBadRequest, "api: request body: " + err.Error()
	}
	return 0, ""
}

// decodeRequest decodes the JSON body of a GraphQL request. On failure it
// returns the HTTP status and message to answer.
//
// The usual body is decoded by decodeBody, any other unmarshalled at once,
// which costs less than a json.Decoder (its struct and its buffers, per
// request). On failure the bytes are replayed through a json.Decoder, whose
// words for a bad body ("unexpected EOF", "more than one JSON value") are
// those this API has always answered.
func decodeRequest(body []byte) (gqlRequest, int, string) {
	var req gqlRequest
	// The media type is not checked: curl -d sends form-urlencoded, and a
	// body that is not JSON gets 400 anyway. Cross-site form posts cannot
	// read the answer nor change state: every operation is a read.
	var err error
	if !decodeBody(body, &req) {
		req = gqlRequest{}
		if err = json.Unmarshal(body, &req); err != nil {
			req, err = streamDecode(bytes.NewReader(body))
		}
	}
	switch {
	case err != nil:
		return req, http.StatusBadRequest, "api: request body: want one JSON object {query, variables, operationName}: " + err.Error()
	case strings.TrimSpace(req.Query) == "":
		return req, http.StatusBadRequest, "api: request body: query is required"
	}
	return req, 0, ""
}

// streamDecode decodes one JSON object from r and checks that nothing but
// white space follows it.
func streamDecode(r io.Reader) (gqlRequest, error) {
	var req gqlRequest
	dec := json.NewDecoder(r)
	err := dec.Decode(&req)
	if err == nil {
		if err = dec.Decode(&struct{}{}); err == io.EOF {
			err = nil
		} else if err == nil {
			err = errors.New("more than one JSON value")
		}
	}
	return req, err
}

// maxPooledBuffer bounds the buffers kept for reuse, so that one large body
// does not stay in memory.
const maxPooledBuffer = 64 << 10

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer {
	b := buffers.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuffer {
		buffers.Put(b)
	}
}

const (
	mediaJSON            = "application/json"
	mediaGraphQLResponse = "application/graphql-response+json"
	// The Content-Type values, written whole rather than built per response.
	contentJSON            = mediaJSON + "; charset=utf-8"
	contentGraphQLResponse = mediaGraphQLResponse + "; charset=utf-8"
)

// writeResponse writes a GraphQL result. A client that accepts
// application/graphql-response+json gets it, with 400 for a request that
// could not execute (no data); others get application/json and 200, as
// GraphQL over HTTP says for that legacy media type.
func (s *Server) writeResponse(w http.ResponseWriter, accept string, resp *graphql.Response) {
	buf := getBuffer()
	defer putBuffer(buf)
	if len(resp.Errors) == 0 && resp.Extensions == nil && len(resp.Data) > 0 {
		// What the encoder below writes for data alone, without its
		// reflection nor its second pass over the data, which graphql-go
		// wrote compact with json.Marshal's escapes (TestGoldenResponses).
		buf.WriteString(`{"data":`)
		buf.Write(resp.Data)
		buf.WriteByte('}')
	} else {
		// Encoded into a pooled buffer: json.Marshal would copy the result
		// out of its own pooled one.
		if err := json.NewEncoder(buf).Encode(resp); err != nil {
			s.log.Error("api: encoding a GraphQL response", "err", err)
			writeError(w, http.StatusInternalServerError, "INTERNAL", "api: encoding the response failed")
			return
		}
		buf.Truncate(buf.Len() - 1) // the newline Encode adds, which json.Marshal did not
	}
	status, content := http.StatusOK, contentJSON
	if strings.Contains(accept, mediaGraphQLResponse) {
		content = contentGraphQLResponse
		if resp.Data == nil {
			status = http.StatusBadRequest
		}
	}
	h := w.Header()
	h.Set("Content-Type", content)
	// One write with its length: net/http would chunk an answer over its
	// 2 KiB buffer.
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// writeError answers an HTTP-level failure in the shape of a GraphQL
// response without data, so that GraphQL clients show its message.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(struct {
		Errors []gqlerrors.QueryError `json:"errors"`
	}{[]gqlerrors.QueryError{{Message: msg, Extensions: map[string]any{"code": code}}}})
	w.Header().Set("Content-Type", contentJSON)
	w.WriteHeader(status)
	w.Write(body)
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, text)
}

// instrument counts the requests of a route by status code and logs each at
// debug level (never a header: they may carry a token).
func (s *Server) instrument(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		sw.Header().Set("X-Content-Type-Options", "nosniff")
		h(sw, r)
		s.metrics.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
		// Checked first: building the arguments allocates, even when the
		// level is off.
		if ctx := r.Context(); s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.DebugContext(ctx, "api: request", "handler", name, "method", r.Method, "path", r.URL.Path,
				"code", sw.code, "duration", time.Since(start))
		}
	})
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flush, hijack).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
