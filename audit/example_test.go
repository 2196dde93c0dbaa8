package audit_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/malocal/malocal/audit"
)

func ExampleAuditor_Audit() {
	// An official base and a custom image with one layer on top of it.
	base, err := random.Image(1024, 2)
	if err != nil {
		log.Fatal(err)
	}
	rec, err := audit.BaseFromImage("eiwizard/custom-cpu-base", "1.0", base)
	if err != nil {
		log.Fatal(err)
	}
	layer, err := random.Layer(1024, types.OCILayer)
	if err != nil {
		log.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		log.Fatal(err)
	}

	a := audit.NewAuditor(audit.StaticCatalog{rec}, nil)
	rep, err := a.Audit(context.Background(), img, audit.Options{})
	if err != nil {
		log.Fatal(err) // could not audit
	}
	fmt.Println(rep.Verdict, rep.Base.Name, rep.AddedLayers)
	if rep.Verdict == audit.Fail {
		rep.WriteText(os.Stdout)
	}
	// Output: pass eiwizard/custom-cpu-base 1
}
