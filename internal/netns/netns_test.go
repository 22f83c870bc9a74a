package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// testSubnet is the private subnet these tests put inside their own
// namespaces. It never appears in the test process's namespace.
var testSubnet = netip.MustParsePrefix("10.231.0.0/24")

// needRoot skips the test unless this process can create network
// namespaces (root, iproute2, a kernel that allows them). CI runs as root.
func needRoot(t *testing.T) {
	t.Helper()
	if err := Supported(context.Background()); err != nil {
		t.Skipf("needs root and 'ip netns': %v", err)
	}
}

// testPrefix returns a namespace name prefix no other test run uses.
func testPrefix(t *testing.T) string {
	return fmt.Sprintf("tunt%d-%s-", os.Getpid(), strings.ToLower(t.Name()[4:min(len(t.Name()), 12)]))
}

// cleanupPrefix deletes every namespace beginning with prefix when the
// test ends, and fails the test if one survives.
func cleanupPrefix(t *testing.T, prefix string) {
	t.Cleanup(func() {
		names, err := List(prefix)
		if err != nil {
			t.Error(err)
		}
		for _, n := range names {
			if err := Delete(context.Background(), n); err != nil {
				t.Error(err)
			}
		}
		if left, _ := List(prefix); len(left) != 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
}

func addr(t *testing.T, i int) netip.Prefix {
	t.Helper()
	a := testSubnet.Addr()
	for ; i > 0; i-- {
		a = a.Next()
	}
	return netip.PrefixFrom(a, testSubnet.Bits())
}

// twoHosts builds a switch with namespaces a (.2) and b (.3) on it.
func twoHosts(t *testing.T) (Switch, Namespace, Namespace) {
	t.Helper()
	needRoot(t)
	ctx := context.Background()
	if err := CheckFree(ctx, testSubnet); err != nil {
		t.Skipf("this machine uses the test subnet: %v", err)
	}
	prefix := testPrefix(t)
	cleanupPrefix(t, prefix)
	sw, err := NewSwitch(ctx, prefix+"sw")
	if err != nil {
		t.Fatal(err)
	}
	var hosts []Namespace
	for i, name := range []string{"a", "b"} {
		ns, err := Add(ctx, prefix+name)
		if err != nil {
			t.Fatal(err)
		}
		if err := sw.Connect(ctx, ns, "p"+name, addr(t, 2+i)); err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, ns)
	}
	return sw, hosts[0], hosts[1]
}

// echoOnce listens in ns on addr and answers one line per connection.
func echoServer(t *testing.T, ns Namespace, addr string) {
	t.Helper()
	ln, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					fmt.Fprint(c, "echo "+line)
				}
			}()
		}
	}()
}

// roundTrip dials addr from ns and exchanges one line.
func roundTrip(ctx context.Context, ns Namespace, addr string) error {
	c, err := ns.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	if _, err := fmt.Fprint(c, "hi\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != "echo hi\n" {
		return fmt.Errorf("got %q", got)
	}
	return nil
}

// TestSwitchJoinsNamespacesOnly: two namespaces on a switch reach each
// other over the private subnet; nothing of that network (address, route,
// link) appears in the test's own namespace; taking a port down cuts the
// namespace behind it off and bringing it up restores it; deleting the
// namespaces leaves none behind.
func TestSwitchJoinsNamespacesOnly(t *testing.T) {
	sw, a, b := twoHosts(t)
	ctx := context.Background()
	srv := netip.AddrPortFrom(addr(t, 2).Addr(), 7001).String()
	echoServer(t, a, srv)

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := roundTrip(rctx, b, srv); err != nil {
		t.Fatalf("b → a: %v", err)
	}
	if err := CheckFree(ctx, testSubnet); err != nil {
		t.Fatalf("the private subnet leaked into the test's namespace: %v", err)
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err != nil {
		t.Fatal(err)
	} else if strings.Contains(string(out), " pa@") || strings.Contains(string(out), " pb@") {
		t.Fatalf("a switch port appears in the test's namespace:\n%s", out)
	}

	// Partition a: b can no longer reach it.
	if err := sw.SetPort(ctx, "pa", false); err != nil {
		t.Fatal(err)
	}
	if up, err := sw.PortUp(ctx, "pa"); err != nil || up {
		t.Fatalf("port pa up=%v err=%v after SetPort down", up, err)
	}
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	err := roundTrip(pctx, b, srv)
	pcancel()
	if err == nil {
		t.Fatal("b reached a through a port that is down")
	}

	// Heal: the connection works again (a fresh dial; ARP may need a retry).
	if err := sw.SetPort(ctx, "pa", true); err != nil {
		t.Fatal(err)
	}
	if up, err := sw.PortUp(ctx, "pa"); err != nil || !up {
		t.Fatalf("port pa up=%v err=%v after SetPort up", up, err)
	}
	var last error
	for i := 0; i < 20; i++ {
		hctx, hcancel := context.WithTimeout(ctx, time.Second)
		last = roundTrip(hctx, b, srv)
		hcancel()
		if last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("b → a after healing: %v", last)
	}

	// Removing b's port takes b's interface with it; removing it again is
	// not an error.
	if err := sw.RemovePort(ctx, "pb"); err != nil {
		t.Fatal(err)
	}
	if sw.HasPort(ctx, "pb") {
		t.Fatal("port pb still there")
	}
	if out, err := exec.Command("ip", "-n", b.Name, "-o", "link", "show").Output(); err != nil || strings.Contains(string(out), IfName) {
		t.Fatalf("%s still has %s (%v):\n%s", b.Name, IfName, err, out)
	}
	if err := sw.RemovePort(ctx, "pb"); err != nil {
		t.Fatalf("second RemovePort: %v", err)
	}
}

// TestDoRunsProcessesInTheNamespace: a process started inside Do sees the
// namespace's interface and address, not the caller's.
func TestDoRunsProcessesInTheNamespace(t *testing.T) {
	_, a, b := twoHosts(t)
	var out []byte
	err := a.Do(func() error {
		var err error
		out, err = exec.Command("ip", "-o", "addr", "show").Output()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), addr(t, 2).String()) || !strings.Contains(string(out), IfName) {
		t.Fatalf("process in %s does not see its address %s:\n%s", a.Name, addr(t, 2), out)
	}
	root, err := exec.Command("ip", "-o", "addr", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(root), addr(t, 2).Addr().String()) {
		t.Fatalf("the test's own namespace has the namespace's address:\n%s", root)
	}
	pids, err := a.Pids(context.Background())
	if err != nil || len(pids) != 0 {
		t.Fatalf("pids in %s after the process exited: %v, %v", a.Name, pids, err)
	}

	// A long-running child: Pids and Contains see it in a, not in b.
	var cmd *exec.Cmd
	if err := a.Do(func() error {
		cmd = exec.Command("cat") // waits on its stdin until the test closes it
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
		return cmd.Start()
	}); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if in, err := a.Contains(pid); err != nil || !in {
		t.Fatalf("%s contains pid %d: %v, %v", a.Name, pid, in, err)
	}
	if in, err := b.Contains(pid); err != nil || in {
		t.Fatalf("%s contains pid %d (started in %s): %v, %v", b.Name, pid, a.Name, in, err)
	}
	if in, err := a.Contains(os.Getpid()); err != nil || in {
		t.Fatalf("the test process is in %s: %v, %v", a.Name, in, err)
	}
	if pids, err := a.Pids(context.Background()); err != nil || len(pids) != 1 || pids[0] != pid {
		t.Fatalf("pids in %s = %v, %v; want [%d]", a.Name, pids, err, pid)
	}
}

// TestSysctlIsPerNamespace: a network sysctl set inside a namespace reads
// back there and leaves the caller's value alone.
func TestSysctlIsPerNamespace(t *testing.T) {
	_, a, b := twoHosts(t)
	const key = "net/ipv4/tcp_retries2"
	rootBefore, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		t.Fatal(err)
	}
	want := "3"
	if strings.TrimSpace(string(rootBefore)) == want {
		want = "4"
	}
	if err := a.SetSysctl(key, want); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Sysctl(key); err != nil || got != want {
		t.Fatalf("%s in %s = %q, %v; want %s", key, a.Name, got, err, want)
	}
	if got, err := b.Sysctl(key); err != nil || got == want {
		t.Fatalf("%s in %s = %q, %v: set in another namespace", key, b.Name, got, err)
	}
	rootAfter, err := os.ReadFile("/proc/sys/" + key)
	if err != nil || string(rootAfter) != string(rootBefore) {
		t.Fatalf("the caller's %s changed: %q → %q (%v)", key, rootBefore, rootAfter, err)
	}
	if err := a.SetSysctl("kernel/hostname", "x"); err == nil {
		t.Fatal("SetSysctl accepted a key outside net/")
	}
}

// TestDeleteIsIdempotentAndList: Delete of a missing namespace succeeds;
// List sees exactly the prefix's namespaces.
func TestDeleteIsIdempotentAndList(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	prefix := testPrefix(t)
	cleanupPrefix(t, prefix)
	for _, n := range []string{"x", "y"} {
		if _, err := Add(ctx, prefix+n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Add(ctx, prefix+"x"); err != nil { // again: found, not an error
		t.Fatal(err)
	}
	got, err := List(prefix)
	if err != nil || strings.Join(got, ",") != prefix+"x,"+prefix+"y" {
		t.Fatalf("List = %v, %v", got, err)
	}
	for _, n := range got {
		if err := Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := Delete(ctx, n); err != nil {
			t.Fatalf("second delete of %s: %v", n, err)
		}
	}
	if got, _ := List(prefix); len(got) != 0 {
		t.Fatalf("List after delete = %v", got)
	}
}

// TestDialRefusesNames: DialContext wants an IP address, so no name is
// resolved outside the namespace.
func TestDialRefusesNames(t *testing.T) {
	_, err := Namespace{Name: "nonexistent"}.DialContext(context.Background(), "tcp", "localhost:80")
	if err == nil || !strings.Contains(err.Error(), "want IP:port") {
		t.Fatalf("dial by name: %v", err)
	}
	_, err = Namespace{Name: "teeup-test-missing"}.DialContext(context.Background(), "tcp", "10.231.0.2:80")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dial in a missing namespace: %v", err)
	}
}

// TestCheckFreeFindsOverlaps: the loopback network is in use everywhere.
func TestCheckFreeFindsOverlaps(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	err := CheckFree(context.Background(), netip.MustParsePrefix("127.0.0.0/24"))
	if !errors.Is(err, ErrSubnetInUse) {
		t.Fatalf("CheckFree(127.0.0.0/24) = %v, want ErrSubnetInUse", err)
	}
}

func TestParsers(t *testing.T) {
	addrs := addrPrefixes([]byte(`1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host noprefixroute
2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0
`))
	if fmt.Sprint(addrs) != "[127.0.0.1/8 ::1/128 192.0.2.2/24]" {
		t.Fatalf("addrPrefixes = %v", addrs)
	}
	routes := routePrefixes([]byte(`default via 192.0.2.1 dev eth0
172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1 linkdown
local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1
broadcast 127.255.255.255 dev lo table local proto kernel scope link src 127.0.0.1
unreachable default dev lo
multicast ff00::/8 dev eth0 table local proto kernel metric 256 pref medium
`))
	if fmt.Sprint(routes) != "[172.17.0.0/16 127.0.0.1/32 127.255.255.255/32 ff00::/8]" {
		t.Fatalf("routePrefixes = %v", routes)
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"teeup-1a2b3c4d-h1", true},
		{"", false},
		{".hidden", false},
		{"a/b", false},
		{"a b", false},
		{strings.Repeat("x", 65), false},
	} {
		if err := ValidName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestDoLeavesNoThreadInside: after many concurrent Do calls no thread of
// this process is left in the namespace (a thread left there would, were
// it the main thread, make the whole process appear inside: 'ip netns
// pids' would list it).
func TestDoLeavesNoThreadInside(t *testing.T) {
	_, a, _ := twoHosts(t)
	home, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 64)
	for i := 0; i < cap(errc); i++ {
		go func() { errc <- a.Do(func() error { _, err := os.Readlink("/proc/thread-self/ns/net"); return err }) }()
	}
	for i := 0; i < cap(errc); i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err == nil && ns != home {
			t.Errorf("thread %s is in %s, the process in %s", task.Name(), ns, home)
		}
	}
	if in, err := a.Contains(os.Getpid()); err != nil || in {
		t.Fatalf("the process is in %s: %v, %v", a.Name, in, err)
	}
	if pids, err := a.Pids(context.Background()); err != nil || len(pids) != 0 {
		t.Fatalf("ip netns pids %s = %v, %v", a.Name, pids, err)
	}
}
