// Command probe is the test workload of internal/nodetest's own tests, put
// in an image with nodetest.BuildImage:
//
//	probe serve ADDR          accept TCP connections, greet each with "probe <hostname>\n"
//	probe dial ADDR           connect (3 s timeout), print the greeting; exit 1 when unreachable
//	probe cat FILE            print a file (a projected token)
//	probe kubeget KUBECONFIG  print the kube-apiserver's version, through the kubeconfig
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	if len(os.Args) != 3 {
		fail(fmt.Errorf("usage: probe serve|dial|cat|kubeget ARG"))
	}
	arg := os.Args[2]
	switch os.Args[1] {
	case "serve":
		fail(serve(arg))
	case "dial":
		conn, err := net.DialTimeout("tcp", arg, 3*time.Second)
		if err != nil {
			fail(err)
		}
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			fail(fmt.Errorf("read greeting from %s: %w", arg, err))
		}
		fmt.Print(line)
	case "cat":
		b, err := os.ReadFile(arg)
		if err != nil {
			fail(err)
		}
		os.Stdout.Write(b)
	case "kubeget":
		cfg, err := clientcmd.BuildConfigFromFlags("", arg)
		if err != nil {
			fail(err)
		}
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			fail(err)
		}
		v, err := kube.Discovery().ServerVersion()
		if err != nil {
			fail(err)
		}
		fmt.Println("apiserver", v.GitVersion)
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}

func serve(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	for {
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		fmt.Fprintf(conn, "probe %s\n", host)
		conn.Close()
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "probe:", err)
	os.Exit(1)
}
