// Package diskfault makes real small filesystems for storage-fault tests
// and testbed scenarios: a tmpfs of a chosen size, filled on demand with a
// ballast file (a full disk), and an ext4 filesystem whose block device
// fails writes with I/O errors once its backing store runs out (a failing
// disk). Everything here needs root (CAP_SYS_ADMIN, loop devices);
// functions return an error wrapping ErrUnsupported, with the reason, where
// the machine does not allow it, so tests can skip and say why.
package diskfault

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrUnsupported is returned, wrapped, when this process may not mount
// filesystems or create loop devices.
var ErrUnsupported = errors.New("cannot make a test filesystem here")

// MountTmpfs mounts a tmpfs of size bytes at dir (created if missing) and
// returns the function that unmounts it.
func MountTmpfs(dir string, size int64) (unmount func() error, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		return nil, fmt.Errorf("%w: mount tmpfs at %s: %v (needs root)", ErrUnsupported, dir, err)
	}
	return func() error { return unmount2(dir) }, nil
}

func unmount2(dir string) error {
	if err := syscall.Unmount(dir, 0); err != nil {
		// Lazily, so a test that leaked an open file still cleans up.
		if err2 := syscall.Unmount(dir, syscall.MNT_DETACH); err2 != nil {
			return fmt.Errorf("unmount %s: %v", dir, err)
		}
	}
	return nil
}

// Supported reports, with an error wrapping ErrUnsupported, whether this
// process may mount a tmpfs (under dir).
func Supported(dir string) error {
	unmount, err := MountTmpfs(filepath.Join(dir, "probe"), 1<<20)
	if err != nil {
		return err
	}
	return unmount()
}

// Free returns the bytes available on the filesystem holding dir.
func Free(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Fill allocates a ballast file in dir so that at most leave bytes stay
// free on its filesystem (nothing is allocated when that many are already
// gone), and returns the function that deletes it again.
func Fill(dir string, leave uint64) (release func() error, err error) {
	free, err := Free(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, ".diskfault-ballast")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create ballast: %w", err)
	}
	defer f.Close()
	release = func() error { return os.Remove(path) }
	if free <= leave {
		return release, nil
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(free-leave)); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("allocate %d bytes of ballast in %s: %w", free-leave, dir, err)
	}
	return release, nil
}

// FailingDisk is an ext4 filesystem mounted at Dir whose loop device is
// backed by a sparse file on a tmpfs smaller than the filesystem: it looks
// roomy (statfs reports most of its size free), but once about the tmpfs's
// size has been written to it, the device fails writes with I/O errors, as
// a failing disk does, and ext4 (errors=remount-ro) turns read-only.
type FailingDisk struct {
	// Dir is where the filesystem is mounted.
	Dir string

	backDir, img, loop string
	unmountBack        func() error
}

// NewFailingDisk makes a FailingDisk of fsSize bytes on a backing tmpfs of
// backing bytes and mounts it at dir. It needs root, losetup and
// mkfs.ext4 (Debian packages mount and e2fsprogs).
func NewFailingDisk(dir string, fsSize, backing int64) (*FailingDisk, error) {
	for tool, pkg := range map[string]string{"losetup": "mount", "mkfs.ext4": "e2fsprogs"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: %s not found (Debian package %s)", ErrUnsupported, tool, pkg)
		}
	}
	d := &FailingDisk{Dir: dir, backDir: dir + ".backing"}
	d.img = filepath.Join(d.backDir, "disk.img")
	var err error
	if d.unmountBack, err = MountTmpfs(d.backDir, backing); err != nil {
		return nil, err
	}
	fail := func(err error) (*FailingDisk, error) {
		d.Close() //nolint:errcheck // reporting the first error
		return nil, err
	}
	f, err := os.Create(d.img)
	if err != nil {
		return fail(err)
	}
	err = f.Truncate(fsSize)
	f.Close()
	if err != nil {
		return fail(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", d.img).CombinedOutput(); err != nil {
		return fail(fmt.Errorf("mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out))))
	}
	if err := d.attach(); err != nil {
		return fail(err)
	}
	return d, nil
}

// attach sets up the loop device and mounts the filesystem.
func (d *FailingDisk) attach() error {
	out, err := exec.Command("losetup", "--find", "--show", d.img).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: losetup: %v: %s", ErrUnsupported, err, strings.TrimSpace(string(out)))
	}
	d.loop = strings.TrimSpace(string(out))
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount(d.loop, d.Dir, "ext4", 0, "errors=remount-ro"); err != nil {
		return fmt.Errorf("%w: mount %s at %s: %v", ErrUnsupported, d.loop, d.Dir, err)
	}
	return nil
}

// detach unmounts the filesystem and frees the loop device.
func (d *FailingDisk) detach() error {
	if d.loop == "" {
		return nil
	}
	var errs []error
	errs = append(errs, unmount2(d.Dir))
	if out, err := exec.Command("losetup", "--detach", d.loop).CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("losetup --detach %s: %v: %s", d.loop, err, out))
	}
	d.loop = ""
	return errors.Join(errs...)
}

// TriggerError makes the filesystem act as on an error it detected
// itself (ext4's trigger_fs_error in sysfs): with errors=remount-ro it
// turns read-only at once, the device staying healthy. Needs a kernel with
// that file (5.x and later).
func (d *FailingDisk) TriggerError() error {
	f := filepath.Join("/sys/fs/ext4", filepath.Base(d.loop), "trigger_fs_error")
	if _, err := os.Stat(f); err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if err := os.WriteFile(f, []byte("geogate test\n"), 0); err != nil {
		return fmt.Errorf("trigger an ext4 error on %s: %w", d.loop, err)
	}
	return nil
}

// Remount unmounts the filesystem and mounts it again, read-write (after
// TriggerError, say).
func (d *FailingDisk) Remount() error {
	if err := d.detach(); err != nil {
		return err
	}
	return d.attach()
}

// Close unmounts and removes everything.
func (d *FailingDisk) Close() error {
	return errors.Join(d.detach(), d.unmountBack(), os.RemoveAll(d.backDir))
}
