package fakeobs

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"hash"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AWS Signature Version 4, as S3 checks it:
// https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html

const (
	sigAlgorithm       = "AWS4-HMAC-SHA256"
	amzDateFormat      = "20060102T150405Z"
	unsignedPayload    = "UNSIGNED-PAYLOAD"
	streamingSigned    = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	streamingSignedTr  = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	streamingUnsignTr  = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	maxClockSkew       = 15 * time.Minute
	maxPresignDuration = 7 * 24 * time.Hour
	emptySHA256        = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// authFailure is an S3 error raised while authenticating.
type authFailure struct {
	status  int
	code    string
	message string
}

func (e *authFailure) Error() string { return e.code + ": " + e.message }

func accessDenied(msg string) *authFailure {
	return &authFailure{http.StatusForbidden, "AccessDenied", msg}
}

func signatureMismatch() *authFailure {
	return &authFailure{http.StatusForbidden, "SignatureDoesNotMatch",
		"The request signature we calculated does not match the signature you provided. Check your key and signing method."}
}

func malformedAuth(msg string) *authFailure {
	return &authFailure{http.StatusBadRequest, "AuthorizationHeaderMalformed", msg}
}

// sigRequest is what a request says about its own signature.
type sigRequest struct {
	accessKey     string
	date          string // yyyymmdd of the scope
	region        string
	service       string
	signedHeaders []string
	signature     string
	amzDate       time.Time
	amzDateRaw    string
	payloadHash   string
	presigned     bool
	expires       time.Duration
}

func (s *sigRequest) scope() string {
	return s.date + "/" + s.region + "/" + s.service + "/aws4_request"
}

func parseCredential(cred string, sr *sigRequest) *authFailure {
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" {
		return malformedAuth("malformed Credential: " + cred)
	}
	sr.accessKey, sr.date, sr.region, sr.service = parts[0], parts[1], parts[2], parts[3]
	if sr.service != "s3" {
		return malformedAuth("credential scope service must be s3")
	}
	return nil
}

// parseSignature reads the signature from the Authorization header or, for
// presigned URLs, from the query. ok is false for an anonymous request.
func parseSignature(r *http.Request) (*sigRequest, bool, *authFailure) {
	sr := &sigRequest{}
	q := r.URL.Query()
	if auth := r.Header.Get("Authorization"); auth != "" {
		rest, ok := strings.CutPrefix(auth, sigAlgorithm+" ")
		if !ok {
			return nil, true, accessDenied("only AWS Signature Version 4 (" + sigAlgorithm + ") is supported")
		}
		fields := map[string]string{}
		for _, f := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			fields[k] = v
		}
		if fail := parseCredential(fields["Credential"], sr); fail != nil {
			return nil, true, fail
		}
		if fields["SignedHeaders"] == "" || fields["Signature"] == "" {
			return nil, true, malformedAuth("Authorization lacks SignedHeaders or Signature")
		}
		sr.signedHeaders = strings.Split(fields["SignedHeaders"], ";")
		sr.signature = fields["Signature"]
		sr.amzDateRaw = r.Header.Get("X-Amz-Date")
		if sr.amzDateRaw == "" {
			sr.amzDateRaw = r.Header.Get("Date")
		}
		sr.payloadHash = r.Header.Get("X-Amz-Content-Sha256")
		if sr.payloadHash == "" {
			return nil, true, &authFailure{http.StatusBadRequest, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256"}
		}
	} else if q.Get("X-Amz-Algorithm") != "" {
		if q.Get("X-Amz-Algorithm") != sigAlgorithm {
			return nil, true, accessDenied("unsupported X-Amz-Algorithm")
		}
		sr.presigned = true
		if fail := parseCredential(q.Get("X-Amz-Credential"), sr); fail != nil {
			return nil, true, fail
		}
		sr.signedHeaders = strings.Split(q.Get("X-Amz-SignedHeaders"), ";")
		sr.signature = q.Get("X-Amz-Signature")
		sr.amzDateRaw = q.Get("X-Amz-Date")
		secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
		if err != nil || secs < 0 || time.Duration(secs)*time.Second > maxPresignDuration {
			return nil, true, &authFailure{http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Expires must be a number of seconds from 0 to 604800"}
		}
		sr.expires = time.Duration(secs) * time.Second
		sr.payloadHash = unsignedPayload
		if v := r.Header.Get("X-Amz-Content-Sha256"); v != "" {
			sr.payloadHash = v
		}
	} else {
		return nil, false, nil
	}
	t, err := time.Parse(amzDateFormat, sr.amzDateRaw)
	if err != nil {
		if t2, err2 := http.ParseTime(sr.amzDateRaw); err2 == nil {
			t = t2
		} else {
			return nil, true, accessDenied("missing or malformed X-Amz-Date")
		}
	}
	sr.amzDate = t
	return sr, true, nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// awsEscape encodes as SigV4 wants: everything but A-Z a-z 0-9 - _ . ~ is
// percent-encoded; '/' is kept when encoding a path.
func awsEscape(s string, keepSlash bool) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || (keepSlash && c == '/') {
			sb.WriteByte(c)
			continue
		}
		sb.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
	}
	return sb.String()
}

func canonicalQuery(r *http.Request) string {
	q := r.URL.Query()
	var pairs []string
	for k, vs := range q {
		if k == "X-Amz-Signature" {
			continue
		}
		for _, v := range vs {
			pairs = append(pairs, awsEscape(k, false)+"="+awsEscape(v, false))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&")
}

func canonicalHeaders(r *http.Request, names []string) string {
	var sb strings.Builder
	for _, n := range names {
		var vals []string
		switch n {
		case "host":
			vals = []string{r.Host}
		case "content-length":
			vals = r.Header.Values("Content-Length")
			if len(vals) == 0 && r.ContentLength >= 0 {
				vals = []string{strconv.FormatInt(r.ContentLength, 10)}
			}
		case "transfer-encoding":
			// net/http moves it out of the header map.
			vals = r.Header.Values("Transfer-Encoding")
			if len(vals) == 0 && len(r.TransferEncoding) > 0 {
				vals = []string{strings.Join(r.TransferEncoding, ",")}
			}
		default:
			vals = r.Header.Values(n)
		}
		for i, v := range vals {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		sb.WriteString(n + ":" + strings.Join(vals, ",") + "\n")
	}
	return sb.String()
}

// rawPath is the request path exactly as the client sent it.
func rawPath(r *http.Request) string {
	p := r.RequestURI
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if p == "" || p[0] != '/' {
		p = r.URL.EscapedPath()
	}
	return p
}

// verify checks the request's signature against the secret. Several
// canonical paths are tried, since clients differ in how they escape keys.
func (sr *sigRequest) verify(r *http.Request, secret string) ([]byte, bool) {
	key := signingKey(secret, sr.date, sr.region, sr.service)
	hdrs := canonicalHeaders(r, sr.signedHeaders)
	query := canonicalQuery(r)
	paths := []string{rawPath(r), awsEscape(r.URL.Path, true)}
	for i, p := range paths {
		if i > 0 && p == paths[0] {
			continue
		}
		creq := strings.Join([]string{r.Method, p, query, hdrs, strings.Join(sr.signedHeaders, ";"), sr.payloadHash}, "\n")
		sts := strings.Join([]string{sigAlgorithm, sr.amzDateRaw, sr.scope(), sha256Hex(creq)}, "\n")
		want := hex.EncodeToString(hmacSHA256(key, sts))
		if subtle.ConstantTimeCompare([]byte(want), []byte(sr.signature)) == 1 {
			return key, true
		}
	}
	return nil, false
}

// sha256Reader fails at EOF when the body does not hash to the value the
// client signed in X-Amz-Content-Sha256.
type sha256Reader struct {
	r    io.Reader
	h    hash.Hash
	want string
	st   *bodyState
}

func (s *sha256Reader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	if err == io.EOF && hex.EncodeToString(s.h.Sum(nil)) != s.want {
		return n, s.st.fail(&authFailure{http.StatusBadRequest, "XAmzContentSHA256Mismatch",
			"The provided 'x-amz-content-sha256' header does not match what was computed."})
	}
	return n, err
}
