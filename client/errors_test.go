package client

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"testing"
)

// TestAnswerErrorTypes: every code word maps to its own type, which also
// matches *APIError with the answer's fields; details are decoded.
func TestAnswerErrorTypes(t *testing.T) {
	types := map[string]any{
		CodeBadJSON: &BadJSONError{}, CodeBadBody: &BadBodyError{}, CodeBadKey: &BadKeyError{},
		CodeBadContext: &BadContextError{}, CodeBadSession: &BadSessionError{}, CodeBadHome: &BadHomeError{},
		CodeBadWait: &BadWaitError{}, CodeBadLimit: &BadLimitError{}, CodeBadForward: &BadForwardError{},
		CodeTooLarge: &TooLargeError{}, CodeNotFound: &NotFoundError{}, CodeNoLink: &NoLinkError{},
		CodeMethodNotAllowed: &MethodNotAllowedError{}, CodeRedirect: &RedirectError{},
		CodeWrongRegion: &WrongRegionError{}, CodeHomeUnreachable: &HomeUnreachableError{}, CodeStale: &StaleError{},
		CodeStaleContext: &StaleContextError{}, CodeClockSkew: &ClockSkewError{}, CodeShuttingDown: &ShuttingDownError{},
		CodeInsufficientStorage: &InsufficientStorageError{}, CodeUnauthenticated: &UnauthenticatedError{},
		CodeForbidden: &ForbiddenError{}, CodeRuleError: &RuleError{}, CodeInternal: &InternalError{},
		CodeBadPosition: &BadPositionError{}, CodeBadPrefix: &BadPrefixError{}, CodePositionGone: &PositionGoneError{},
		CodePositionAhead: &PositionAheadError{}, CodeSlowConsumer: &SlowConsumerError{},
		"teapot": &APIError{},
	}
	seen := map[reflect.Type]string{}
	for code, want := range types {
		body := fmt.Sprintf(`{"error":"message of %s","code":%q,"home":"eu","url":"http://eu/v1/kv/k","missing":{"a~1":{"want":5,"applied":3}}}`, code, code)
		err := newAnswerError(499, http.Header{"Allow": {"GET, PUT"}}, []byte(body), "http://us")
		if reflect.TypeOf(err) != reflect.TypeOf(want) {
			t.Errorf("code %s: %T, want %T", code, err, want)
		}
		if other, dup := seen[reflect.TypeOf(err)]; dup {
			t.Errorf("codes %s and %s share the type %T", code, other, err)
		}
		seen[reflect.TypeOf(err)] = code
		var ae *APIError
		if !errors.As(fmt.Errorf("wrapped: %w", err), &ae) || ae.Status != 499 || ae.Code != code ||
			ae.Message != "message of "+code || ae.Endpoint != "http://us" || string(ae.Body) != body {
			t.Errorf("code %s: as *APIError %+v", code, ae)
		}
	}
	var st *StaleError
	if !errors.As(newAnswerError(503, nil, []byte(`{"error":"e","code":"stale","missing":{"a~1":{"want":5,"applied":3}}}`), ""), &st) ||
		st.Missing["a~1"] != (StaleActor{Want: 5, Applied: 3}) {
		t.Errorf("stale details %+v", st)
	}
	var re *RedirectError
	if !errors.As(newAnswerError(307, http.Header{"Location": {"http://eu/x"}}, []byte(`{"error":"e","code":"redirect","home":"eu"}`), ""), &re) ||
		re.Home != "eu" || re.URL != "http://eu/x" {
		t.Errorf("redirect details %+v", re)
	}
	var mna *MethodNotAllowedError
	if !errors.As(newAnswerError(405, http.Header{"Allow": {"GET, PUT"}}, []byte(`{"error":"e","code":"method_not_allowed"}`), ""), &mna) ||
		!reflect.DeepEqual(mna.Allow, []string{"GET", "PUT"}) {
		t.Errorf("allow %+v", mna)
	}
	var pg *PositionGoneError
	if !errors.As(newAnswerError(200, nil, []byte(`{"error":"e","code":"position_gone","after":3,"oldest":9}`), ""), &pg) || pg.After != 3 || pg.Oldest != 9 {
		t.Errorf("position gone details %+v", pg)
	}
	var hu *HomeUnreachableError
	if !errors.As(newAnswerError(503, nil, []byte(`{"error":"e","code":"home_unreachable","home":"eu"}`), ""), &hu) || hu.Home != "eu" {
		t.Errorf("home unreachable %+v", hu)
	}
	// Not the API's JSON (a proxy's page): the status and the text remain.
	err := newAnswerError(502, nil, []byte("<html>Bad Gateway</html>"), "http://lb")
	if ae, ok := err.(*APIError); !ok || ae.Status != 502 || ae.Code != "" || ae.Message != "<html>Bad Gateway</html>" {
		t.Errorf("non-JSON answer: %#v", err)
	}
	if !IsNotFound(fmt.Errorf("x: %w", newAnswerError(404, nil, []byte(`{"error":"e","code":"not_found"}`), ""))) {
		t.Error("IsNotFound of a wrapped not_found")
	}
}
