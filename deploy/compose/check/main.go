// Command check loads compose files the way `docker compose config` does, with compose-go (the Compose
// Specification's reference loader): schema validation, interpolation, references between services,
// networks and volumes. It prints the resolved project as JSON, or the reason the files are invalid and
// exits 1. No Docker engine is needed, which is why the tests use it: none runs on the build machines.
//
//	check [-env KEY=VALUE]... compose.yaml [override.yaml]...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

type envFlags []string

func (e *envFlags) String() string     { return fmt.Sprint(*e) }
func (e *envFlags) Set(v string) error { *e = append(*e, v); return nil }

func main() {
	var env envFlags
	flag.Var(&env, "env", "a variable for interpolation, KEY=VALUE (repeatable; the process's own are not used)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: check [-env KEY=VALUE]... compose.yaml [more.yaml]...")
		os.Exit(2)
	}
	options, err := cli.NewProjectOptions(flag.Args(), cli.WithEnv(env), cli.WithConsistency(true))
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(append(out, '\n'))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "invalid:", err)
	os.Exit(1)
}
