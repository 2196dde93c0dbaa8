package fakeobs

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AWS Signature Version 2, which botocore still uses for presigned S3 URLs
// in us-east-1 and s3cmd offers as an option:
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html

// v2Subresources are the query parameters that are part of the signed
// resource in V2.
var v2Subresources = map[string]bool{
	"acl": true, "cors": true, "delete": true, "lifecycle": true, "location": true, "logging": true,
	"notification": true, "partNumber": true, "policy": true, "requestPayment": true, "restore": true,
	"tagging": true, "torrent": true, "uploadId": true, "uploads": true, "versionId": true,
	"versioning": true, "versions": true, "website": true,
	"response-content-type": true, "response-content-language": true, "response-expires": true,
	"response-cache-control": true, "response-content-disposition": true, "response-content-encoding": true,
}

type sigV2 struct {
	accessKey string
	signature string
	presigned bool
	expires   time.Time // presigned only
}

// parseSigV2 recognises V2 credentials; ok is false when there are none.
func parseSigV2(r *http.Request) (*sigV2, bool) {
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "AWS ") {
		ak, sig, found := strings.Cut(strings.TrimPrefix(auth, "AWS "), ":")
		if !found {
			return nil, false
		}
		return &sigV2{accessKey: ak, signature: sig}, true
	}
	q := r.URL.Query()
	if q.Get("AWSAccessKeyId") != "" && q.Get("Signature") != "" {
		secs, err := strconv.ParseInt(q.Get("Expires"), 10, 64)
		if err != nil {
			return nil, false
		}
		return &sigV2{accessKey: q.Get("AWSAccessKeyId"), signature: q.Get("Signature"), presigned: true, expires: time.Unix(secs, 0)}, true
	}
	return nil, false
}

func (s *sigV2) stringToSign(r *http.Request) string {
	q := r.URL.Query()
	date := r.Header.Get("Date")
	if s.presigned {
		date = q.Get("Expires")
	} else if r.Header.Get("X-Amz-Date") != "" {
		date = ""
	}
	var amz []string
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-") {
			amz = append(amz, lk+":"+strings.Join(vs, ","))
		}
	}
	sort.Strings(amz)
	var sb strings.Builder
	sb.WriteString(r.Method + "\n" + r.Header.Get("Content-MD5") + "\n" + r.Header.Get("Content-Type") + "\n" + date + "\n")
	for _, h := range amz {
		sb.WriteString(h + "\n")
	}
	sb.WriteString(rawPath(r))
	var subs []string
	for k, vs := range q {
		if !v2Subresources[k] {
			continue
		}
		for _, v := range vs {
			if v == "" {
				subs = append(subs, k)
			} else {
				subs = append(subs, k+"="+v)
			}
		}
	}
	sort.Strings(subs)
	if len(subs) > 0 {
		sb.WriteString("?" + strings.Join(subs, "&"))
	}
	return sb.String()
}

func (s *sigV2) verify(r *http.Request, secret string) bool {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(s.stringToSign(r)))
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	return hmac.Equal([]byte(want), []byte(s.signature))
}

// checkV2 authenticates a V2 request; the payload is not signed in V2.
func (svc *Service) checkV2(r *http.Request, s *sigV2) *authFailure {
	secret, _, af := svc.secretOf(s.accessKey)
	if af != nil {
		return af
	}
	now := svc.opts.now()
	if s.presigned {
		if now.After(s.expires) {
			return accessDenied("Request has expired")
		}
	} else {
		d := r.Header.Get("X-Amz-Date")
		if d == "" {
			d = r.Header.Get("Date")
		}
		t, err := http.ParseTime(d)
		if err != nil {
			t, err = time.Parse(time.RFC1123Z, d) // s3cmd's form
		}
		if err != nil {
			return accessDenied("missing or malformed Date")
		}
		if skew := now.Sub(t); skew > maxClockSkew || skew < -maxClockSkew {
			return &authFailure{http.StatusForbidden, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large."}
		}
	}
	if !s.verify(r, secret) {
		return signatureMismatch()
	}
	return nil
}
