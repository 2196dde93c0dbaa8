// Command audit-bench measures malocal's image audit on an image whose
// added layers hold 1 GiB of files, in the same run as two peers:
//
//   - the floor: gunzip and read the same added layers, nothing else;
//   - dockle (github.com/goodwithtech/dockle), built from the Go module
//     proxy in the benchmark's temp dir, reading the image as a
//     docker-archive with --input.
//
// It does so on two bases of different sizes (100 MiB and 2 GiB by
// default) with the same added layers, to show that the audit follows what
// the user added and not the size of the base. Every tool runs in a child
// process of its own, so its CPU time and peak memory are its own.
//
//	go run ./bench/audit > result.md
//	go run ./bench/audit -added-mib 128 -bases 16,256 -runs 1   # quick
//
// Images are generated with go-containerregistry and pushed to malocal's
// registry storage in the temp dir, which the audit reads as the emulator
// does (no network hop). Everything is removed at the end.
package main

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/sync/errgroup"

	"github.com/malocal/malocal/audit"
	"github.com/malocal/malocal/bench/benchstat"
	"github.com/malocal/malocal/registry"
)

const dockleModule = "github.com/goodwithtech/dockle"

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "-child-") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := child(ctx, os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, os.Args[1]+":", err)
			os.Exit(1)
		}
		return
	}
	addedMiB := flag.Int("added-mib", 1024, "bytes of files in the added layers, MiB")
	basesFlag := flag.String("bases", "100,2048", "sizes of the bases to measure on, MiB, comma-separated")
	runs := flag.Int("runs", 3, "runs of each tool on each image; the median is reported")
	dockleVersion := flag.String("dockle-version", "v0.4.15", "dockle version to build from the Go module proxy")
	dockleBin := flag.String("dockle", "", "a dockle binary to use instead of building one")
	flag.Parse()
	var bases []int
	for _, s := range strings.Split(*basesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "audit-bench: -bases %q: want sizes in MiB, e.g. 100,2048\n", *basesFlag)
			os.Exit(2)
		}
		bases = append(bases, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, int64(*addedMiB)<<20, bases, max(*runs, 1), *dockleVersion, *dockleBin); err != nil {
		fmt.Fprintln(os.Stderr, "audit-bench:", err)
		os.Exit(1)
	}
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

// result is one tool's runs on one image.
type result struct {
	Wall    []float64 `json:"wall_s"`
	CPU     []float64 `json:"cpu_s"`
	PeakKiB int64     `json:"peak_kib"`
	// malocal only: the first audit, which hashes and indexes the base.
	First    float64 `json:"first_s,omitempty"`
	FirstCPU float64 `json:"first_cpu_s,omitempty"`
	FirstKiB int64   `json:"first_peak_kib,omitempty"`
}

func run(ctx context.Context, added int64, bases []int, runs int, dockleVersion, dockleBin string) error {
	dir, err := os.MkdirTemp("", "audit-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	if dockleBin == "" {
		logf("building dockle %s from the Go module proxy", dockleVersion)
		if dockleBin, err = buildDockle(ctx, dir, dockleVersion); err != nil {
			return err
		}
	}

	logf("writing the added layers: %d MiB of files", added>>20)
	addedLayers, addedStats, err := writeAddedLayers(filepath.Join(dir, "layers"), added)
	if err != nil {
		return err
	}
	regRoot := filepath.Join(dir, "registry")
	reg, err := registry.New(regRoot)
	if err != nil {
		return err
	}
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	type measured struct {
		baseMiB                      int
		malocal, floor, hashed, dock result
	}
	var rows []measured
	for _, baseMiB := range bases {
		logf("writing a base of %d MiB", baseMiB)
		baseLayers, baseStats, err := writeBaseLayers(filepath.Join(dir, fmt.Sprintf("base-%d", baseMiB)), int64(baseMiB)<<20)
		if err != nil {
			return err
		}
		base, err := mutate.AppendLayers(empty.Image, baseLayers...)
		if err != nil {
			return err
		}
		img, err := mutate.AppendLayers(base, addedLayers...)
		if err != nil {
			return err
		}
		baseRepo, imgRepo := fmt.Sprintf("bench/base-%d", baseMiB), fmt.Sprintf("bench/train-on-%d", baseMiB)
		logf("pushing base (%d files) and image to malocal's registry storage", baseStats.files)
		for _, p := range []struct {
			repo string
			img  v1.Image
		}{{baseRepo, base}, {imgRepo, img}} {
			ref, err := name.ParseReference(host+"/"+p.repo+":1", name.Insecure)
			if err != nil {
				return err
			}
			if err := remote.Write(ref, p.img, remote.WithContext(ctx)); err != nil {
				return fmt.Errorf("push %s: %w", ref, err)
			}
		}
		archive := filepath.Join(dir, fmt.Sprintf("image-on-%d.tar", baseMiB))
		logf("writing the docker-archive for dockle")
		tag, err := name.NewTag("bench/train:1")
		if err != nil {
			return err
		}
		if err := tarball.WriteToFile(archive, tag, img); err != nil {
			return fmt.Errorf("write %s: %w", archive, err)
		}

		m := measured{baseMiB: baseMiB}
		logf("floor: gunzip and read the added layers, %d runs", runs)
		if err := runChild(ctx, &m.floor, "-child-floor", regRoot, imgRepo, strconv.Itoa(len(baseLayers)), strconv.Itoa(runs), "read"); err != nil {
			return err
		}
		logf("floor with sha256: gunzip, read and hash the added layers, %d runs", runs)
		if err := runChild(ctx, &m.hashed, "-child-floor", regRoot, imgRepo, strconv.Itoa(len(baseLayers)), strconv.Itoa(runs), "sha256"); err != nil {
			return err
		}
		logf("malocal audit: first audit, then %d with the base indexed", runs)
		if err := runChild(ctx, &m.malocal, "-child-audit", regRoot, baseRepo, imgRepo, strconv.Itoa(runs)); err != nil {
			return err
		}
		logf("dockle --input, %d runs", runs)
		if m.dock, err = runDockle(ctx, dockleBin, dir, archive, runs); err != nil {
			return err
		}
		rows = append(rows, m)
		os.Remove(archive)
		os.RemoveAll(filepath.Join(dir, fmt.Sprintf("base-%d", baseMiB)))
	}

	fmt.Printf("Added layers: %s of files in %d files and %d dirs over 3 layers, %s gzipped; "+
		"%d runs per tool and image, median wall time (min–max), CPU time of the median run, peak RSS; "+
		"GOMAXPROCS %d; dockle %s.\n\n",
		gib(addedStats.bytes), addedStats.files, addedStats.dirs, gib(addedStats.gz), runs, runtime.GOMAXPROCS(0), dockleVersion)
	fmt.Println("| base | tool | wall (median, min–max) | wall ÷ floor | CPU | CPU ÷ floor | peak RSS |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|")
	for _, m := range rows {
		floorWall, floorCPU := benchstat.Median(m.floor.Wall), cpuOfMedian(m.floor)
		cell := func(tool, wall string, w, cpu float64, peak int64) {
			fmt.Printf("| %d MiB | %s | %s | %.2f× | %.2f s | %.2f× | %s |\n",
				m.baseMiB, tool, wall, w/floorWall, cpu, cpu/floorCPU, mibK(peak))
		}
		line := func(tool string, r result) {
			w := benchstat.Median(r.Wall)
			cell(tool, fmt.Sprintf("%.2f s (%.2f–%.2f)", w, slices.Min(r.Wall), slices.Max(r.Wall)), w, cpuOfMedian(r), r.PeakKiB)
		}
		line("floor: gunzip + read of the added layers", m.floor)
		line("gunzip + sha256 of the added layers (the diff_id check alone)", m.hashed)
		line("malocal audit, base already indexed", m.malocal)
		cell("malocal first audit (hashes and indexes the base too)", fmt.Sprintf("%.2f s", m.malocal.First), m.malocal.First, m.malocal.FirstCPU, m.malocal.FirstKiB)
		line("dockle --input (reads the whole image)", m.dock)
	}
	return nil
}

// buildDockle builds dockle from the module proxy's source in dir.
func buildDockle(ctx context.Context, dir, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", dockleModule+"@"+version)
	cmd.Dir = dir // outside any module: nothing is added to ours
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w", dockleModule, version, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: no source dir (%v %s)", dockleModule, version, err, mod.Error)
	}
	src := filepath.Join(dir, "dockle-src")
	if out, err := exec.CommandContext(ctx, "cp", "-r", mod.Dir, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy dockle source: %w: %s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "chmod", "-R", "u+w", src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("chmod dockle source: %w: %s", err, out)
	}
	bin := filepath.Join(dir, "dockle")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/dockle")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build dockle: %w\n%s", err, out)
	}
	return bin, nil
}

// runDockle runs dockle on the archive runs times, each in a new process.
func runDockle(ctx context.Context, bin, dir, archive string, runs int) (result, error) {
	var r result
	for i := 0; i < runs; i++ {
		out := filepath.Join(dir, "dockle.json")
		cmd := exec.CommandContext(ctx, bin, "--timeout", "60m", "--format", "json", "--output", out, "--input", archive)
		cmd.Env = append(os.Environ(), "TMPDIR="+dir)
		t := time.Now()
		msg, err := cmd.CombinedOutput()
		wall := time.Since(t).Seconds()
		if err != nil {
			return r, fmt.Errorf("dockle: %w\n%s", err, msg)
		}
		var rep struct {
			Summary map[string]int `json:"summary"`
		}
		raw, err := os.ReadFile(out)
		if err != nil || json.Unmarshal(raw, &rep) != nil || rep.Summary == nil {
			return r, fmt.Errorf("dockle wrote no report (%v):\n%s\n%s", err, raw, msg)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		r.Wall = append(r.Wall, wall)
		r.CPU = append(r.CPU, tv(ru.Utime)+tv(ru.Stime))
		r.PeakKiB = max(r.PeakKiB, ru.Maxrss) // KiB on Linux
	}
	return r, nil
}

// runChild runs this binary in a child mode and decodes its result.
func runChild(ctx context.Context, r *result, mode string, args ...string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, self, append([]string{mode}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s: %w", mode, err)
	}
	if err := json.Unmarshal(out, r); err != nil {
		return fmt.Errorf("%s: %w: %s", mode, err, out)
	}
	return nil
}

// child is the measuring side, in a process of its own.
func child(ctx context.Context, mode string, args []string) error {
	var r result
	var err error
	switch mode {
	case "-child-audit":
		if len(args) != 4 {
			return errors.New("want REGISTRY-ROOT BASE-REPO IMAGE-REPO RUNS")
		}
		n, _ := strconv.Atoi(args[3])
		r, err = childAudit(ctx, args[0], args[1], args[2], n)
	case "-child-floor":
		if len(args) != 5 {
			return errors.New("want REGISTRY-ROOT IMAGE-REPO BASE-LAYERS RUNS read|sha256")
		}
		nBase, _ := strconv.Atoi(args[2])
		n, _ := strconv.Atoi(args[3])
		r, err = childFloor(ctx, args[0], args[1], nBase, n, args[4] == "sha256")
	default:
		return fmt.Errorf("unknown mode %s", mode)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// childAudit audits the image as the emulator does: one Auditor over the
// registry's storage. The first audit hashes and indexes the base; the
// next ones find the base known, as every later image on it does.
func childAudit(ctx context.Context, root, baseRepo, imgRepo string, runs int) (result, error) {
	var r result
	reg, err := registry.New(root)
	if err != nil {
		return r, err
	}
	base, err := reg.Image(ctx, baseRepo, "1")
	if err != nil {
		return r, err
	}
	rec, err := audit.BaseFromImage(baseRepo, "1", base)
	if err != nil {
		return r, err
	}
	a := audit.NewAuditor(audit.StaticCatalog{rec}, nil)
	img, err := reg.Image(ctx, imgRepo, "1")
	if err != nil {
		return r, err
	}
	once := func() (float64, float64, error) {
		c0, t := cpuSelf(), time.Now()
		rep, err := a.Audit(ctx, img, audit.Options{Force: true})
		wall, cpu := time.Since(t).Seconds(), cpuSelf()-c0
		if err != nil {
			return 0, 0, err
		}
		if rep.Verdict != audit.Pass {
			return 0, 0, fmt.Errorf("the benchmark image failed the audit: %+v", rep.Violations)
		}
		return wall, cpu, nil
	}
	if r.First, r.FirstCPU, err = once(); err != nil {
		return r, err
	}
	r.FirstKiB = peakSelf()
	runtime.GC()
	resetPeak()
	for i := 0; i < runs; i++ {
		w, c, err := once()
		if err != nil {
			return r, err
		}
		r.Wall, r.CPU = append(r.Wall, w), append(r.CPU, c)
	}
	r.PeakKiB = peakSelf()
	return r, nil
}

// childFloor gunzips and reads the added layers' stored blobs, as many at
// once as the audit reads (min(GOMAXPROCS, 4)), checking nothing; with
// hash, it also hashes the uncompressed stream, as checking a diff_id does.
func childFloor(ctx context.Context, root, imgRepo string, nBase, runs int, hash bool) (result, error) {
	var r result
	reg, err := registry.New(root)
	if err != nil {
		return r, err
	}
	img, err := reg.Image(ctx, imgRepo, "1")
	if err != nil {
		return r, err
	}
	layers, err := img.Layers()
	if err != nil {
		return r, err
	}
	resetPeak()
	for i := 0; i < runs; i++ {
		c0, t := cpuSelf(), time.Now()
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(min(runtime.GOMAXPROCS(0), 4))
		for _, l := range layers[nBase:] {
			g.Go(func() error {
				rc, err := l.Compressed()
				if err != nil {
					return err
				}
				defer rc.Close()
				zr, err := gzip.NewReader(rc)
				if err != nil {
					return err
				}
				h := sha256.New()
				buf := make([]byte, 128<<10)
				for gctx.Err() == nil {
					n, err := zr.Read(buf)
					if hash {
						h.Write(buf[:n])
					}
					if err == io.EOF {
						return nil
					} else if err != nil {
						return err
					}
				}
				return gctx.Err()
			})
		}
		if err := g.Wait(); err != nil {
			return r, err
		}
		r.Wall, r.CPU = append(r.Wall, time.Since(t).Seconds()), append(r.CPU, cpuSelf()-c0)
	}
	r.PeakKiB = peakSelf()
	return r, nil
}

// stats describe generated layers.
type stats struct {
	files, dirs int
	bytes, gz   int64
}

// fileSpec is one file to generate.
type fileSpec struct {
	path string
	size int64
	kind int // textKind, libKind, noiseKind or passwdKind
	mode int64
}

const (
	textKind   = iota // source code and metadata: compresses about 3:1
	libKind           // shared libraries: half noise, half text
	noiseKind         // model weights: incompressible
	passwdKind        // /etc/passwd with root and work
)

// writeAddedLayers writes what a training image adds on a base, in three
// layers as three Dockerfile steps make them: a pip install (a few
// thousand small sources and some shared libraries), the user's code, and
// model weights. The files hold total bytes.
func writeAddedLayers(dir string, total int64) ([]v1.Layer, stats, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	var pip, code, weights []fileSpec
	site := "usr/local/lib/python3.11/site-packages"
	var used int64
	// 15% in small sources, log-uniform 256 B–256 KiB.
	for i := 0; used < total*15/100; i++ {
		s := logUniform(rng, 256, 256<<10)
		pip = append(pip, fileSpec{path: fmt.Sprintf("%s/pkg%02d/mod%02d/file%04d.py", site, i%40, i/40%25, i), size: s, kind: textKind, mode: 0o644})
		used += s
	}
	// 25% in shared libraries of 1–16 MiB.
	for i := 0; used < total*40/100; i++ {
		s := logUniform(rng, 1<<20, 16<<20)
		pip = append(pip, fileSpec{path: fmt.Sprintf("%s/pkg%02d/_native%02d.so", site, i%40, i), size: s, kind: libKind, mode: 0o755})
		used += s
	}
	// The user's code: a few hundred small files.
	for i := 0; i < 400 && used < total*42/100; i++ {
		s := logUniform(rng, 128, 64<<10)
		code = append(code, fileSpec{path: fmt.Sprintf("home/work/app/src/m%02d/f%03d.py", i%20, i), size: s, kind: textKind, mode: 0o644})
		used += s
	}
	// The rest in three weight files.
	rest := total - used
	for i := int64(0); i < 3; i++ {
		s := rest / 3
		if i == 2 {
			s = rest - 2*(rest/3)
		}
		weights = append(weights, fileSpec{path: fmt.Sprintf("home/work/model/shard-%d.safetensors", i), size: s, kind: noiseKind, mode: 0o644})
	}
	return writeLayers(dir, [][]fileSpec{pip, code, weights}, 3)
}

// writeBaseLayers writes a base of total bytes, as a Debian image with
// python and its libraries is: mostly small files under /usr, in layers of
// at most 512 MiB.
func writeBaseLayers(dir string, total int64) ([]v1.Layer, stats, error) {
	rng := rand.New(rand.NewPCG(uint64(total), 3))
	var layers [][]fileSpec
	var cur []fileSpec
	var inLayer, used int64
	for i := 0; used < total; i++ {
		var f fileSpec
		switch {
		case i%10 == 9:
			f = fileSpec{path: fmt.Sprintf("usr/lib/x86_64-linux-gnu/lib%05d.so.1", i), size: logUniform(rng, 16<<10, 4<<20), kind: libKind, mode: 0o644}
		case i%10 == 8:
			f = fileSpec{path: fmt.Sprintf("usr/bin/tool%05d", i), size: logUniform(rng, 8<<10, 1<<20), kind: libKind, mode: 0o755}
		default:
			f = fileSpec{path: fmt.Sprintf("usr/lib/python3/dist-packages/p%03d/m%05d.py", i%300, i), size: logUniform(rng, 256, 256<<10), kind: textKind, mode: 0o644}
		}
		f.size = min(f.size, total-used)
		cur = append(cur, f)
		used += f.size
		inLayer += f.size
		if inLayer >= 512<<20 {
			layers = append(layers, cur)
			cur, inLayer = nil, 0
		}
	}
	if len(cur) > 0 {
		layers = append(layers, cur)
	}
	layers[0] = append(layers[0],
		fileSpec{path: "etc/passwd", kind: passwdKind, mode: 0o644},
		fileSpec{path: "bin/sh", size: 128 << 10, kind: libKind, mode: 0o755})
	return writeLayers(dir, layers, int(total))
}

// writeLayers writes each list as a gzipped tar (with its parent
// directories) and opens it as a layer. Files are written concurrently.
func writeLayers(dir string, lists [][]fileSpec, seed int) ([]v1.Layer, stats, error) {
	var st stats
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, st, err
	}
	gen := newGenerator(uint64(seed))
	layers := make([]v1.Layer, len(lists))
	sts := make([]stats, len(lists))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, files := range lists {
		g.Go(func() error {
			p := filepath.Join(dir, fmt.Sprintf("layer-%d.tar.gz", i))
			s, err := writeLayer(p, files, gen, uint64(i))
			if err != nil {
				return err
			}
			sts[i] = s
			layers[i], err = tarball.LayerFromFile(p)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, st, err
	}
	for _, s := range sts {
		st.files += s.files
		st.dirs += s.dirs
		st.bytes += s.bytes
		st.gz += s.gz
	}
	return layers, st, nil
}

func writeLayer(p string, files []fileSpec, gen *generator, seed uint64) (stats, error) {
	var st stats
	f, err := os.Create(p)
	if err != nil {
		return st, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw := gzip.NewWriter(bw) // default level, as docker push uses
	tw := tar.NewWriter(zw)
	mt := time.Unix(1_700_000_000, 0)
	dirs := map[string]bool{}
	var mkdirs func(d string) error
	mkdirs = func(d string) error {
		if d == "." || dirs[d] {
			return nil
		}
		if err := mkdirs(filepath.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		st.dirs++
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mt})
	}
	rng := rand.New(rand.NewPCG(seed, 9))
	for _, fs := range files {
		if err := mkdirs(filepath.Dir(fs.path)); err != nil {
			return st, err
		}
		body := gen.body(rng, fs)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fs.path, Mode: fs.mode, Size: int64(len(body.head)) + body.n, ModTime: mt}); err != nil {
			return st, err
		}
		if _, err := tw.Write(body.head); err != nil {
			return st, err
		}
		if err := body.write(tw); err != nil {
			return st, err
		}
		st.files++
		st.bytes += int64(len(body.head)) + body.n
	}
	if err := tw.Close(); err != nil {
		return st, err
	}
	if err := zw.Close(); err != nil {
		return st, err
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	fi, err := f.Stat()
	if err != nil {
		return st, err
	}
	st.gz = fi.Size()
	return st, f.Close()
}

// generator makes file contents fast: text is cut from a corpus of
// code-like lines at random offsets, noise comes from ChaCha8.
type generator struct{ text []byte }

func newGenerator(seed uint64) *generator {
	rng := rand.New(rand.NewPCG(seed, 5))
	words := []string{"import", "numpy", "as", "np", "def", "return", "self", "tensor", "for", "in", "range",
		"if", "else:", "model", "loss", "grad", "epoch", "batch", "(", ")", "=", "0.5", "None", "class", "torch", "x", "y"}
	text := make([]byte, 0, 8<<20)
	for len(text) < 8<<20 {
		n := 3 + rng.IntN(10)
		text = append(text, strings.Repeat("    ", rng.IntN(3))...)
		for j := 0; j < n; j++ {
			text = append(text, words[rng.IntN(len(words))]...)
			text = append(text, ' ')
		}
		text = append(text, fmt.Sprintf("# %d\n", rng.Uint32())...)
	}
	return &generator{text: text}
}

// fileBody is a file's content: a head, then n bytes written by write.
type fileBody struct {
	head  []byte
	n     int64
	write func(io.Writer) error
}

func (g *generator) body(rng *rand.Rand, f fileSpec) fileBody {
	textPart := func(w io.Writer, n int64) error {
		for n > 0 {
			off := rng.IntN(len(g.text) - 1<<20)
			k := min(n, 1<<20)
			if _, err := w.Write(g.text[off : off+int(k)]); err != nil {
				return err
			}
			n -= k
		}
		return nil
	}
	noisePart := func(w io.Writer, n int64) error {
		_, err := io.CopyN(w, rand.NewChaCha8([32]byte{byte(rng.Uint32()), byte(rng.Uint32()), 1}), n)
		return err
	}
	switch f.kind {
	case passwdKind:
		passwd := []byte("root:x:0:0:root:/root:/bin/sh\nwork:x:1101:1101::/home/work:/bin/sh\n")
		return fileBody{head: passwd, write: func(io.Writer) error { return nil }}
	case textKind:
		return fileBody{n: f.size, write: func(w io.Writer) error { return textPart(w, f.size) }}
	case libKind:
		return fileBody{n: f.size, write: func(w io.Writer) error {
			if err := noisePart(w, f.size/2); err != nil {
				return err
			}
			return textPart(w, f.size-f.size/2)
		}}
	default:
		return fileBody{n: f.size, write: func(w io.Writer) error { return noisePart(w, f.size) }}
	}
}

func logUniform(rng *rand.Rand, lo, hi int64) int64 {
	return int64(math.Exp(math.Log(float64(lo)) + rng.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))))
}

// cpuSelf is this process's user+system CPU seconds.
func cpuSelf() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// peakSelf is this process's peak resident memory (VmHWM) in KiB.
func peakSelf() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// resetPeak starts VmHWM again from the current RSS.
func resetPeak() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// cpuOfMedian is the CPU time of the run with the median wall time.
func cpuOfMedian(r result) float64 {
	m := benchstat.Median(r.Wall)
	for i, w := range r.Wall {
		if w == m {
			return r.CPU[i]
		}
	}
	return 0
}

func gib(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func mibK(kib int64) string { return fmt.Sprintf("%.0f MiB", float64(kib)/1024) }
