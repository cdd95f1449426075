package link

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// TestSetUsers: a running server's users change without a restart: a new
// user may connect, a removed one is refused (and its connection closed),
// and permissions follow the new list.
func TestSetUsers(t *testing.T) {
	user := func() (nkeys.KeyPair, string) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		return kp, pub
	}
	aKey, aPub := user()
	bKey, bPub := user()
	srv, err := StartServer(ServerOptions{Name: "users", Port: -1, StoreDir: t.TempDir(),
		Users: []ServerUser{{NKey: aPub, PublishAllow: []string{"x"}, SubscribeAllow: []string{"_INBOX.>"}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	connect := func(kp nkeys.KeyPair, pub string) (*nats.Conn, error) {
		return nats.Connect(srv.ClientURL(), nats.Nkey(pub, kp.Sign), nats.MaxReconnects(0), nats.Timeout(2*time.Second))
	}
	a, err := connect(aKey, aPub)
	if err != nil {
		t.Fatalf("a: %v", err)
	}
	defer a.Close()
	if _, err := connect(bKey, bPub); err == nil {
		t.Fatal("b connected before it was a user")
	}
	if err := srv.SetUsers([]ServerUser{{NKey: bPub, PublishAllow: []string{"y"}, SubscribeAllow: []string{"_INBOX.>"}}}); err != nil {
		t.Fatal(err)
	}
	b, err := connect(bKey, bPub)
	if err != nil {
		t.Fatalf("b after SetUsers: %v", err)
	}
	defer b.Close()
	if _, err := connect(aKey, aPub); err == nil {
		t.Fatal("a connected after it was removed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("a's connection survived its removal")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := srv.SetUsers(nil); err == nil {
		t.Fatal("turning authentication off was accepted")
	}
}
