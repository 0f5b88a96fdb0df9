// Command runtask runs one task on a llama-mesh control plane and prints the
// finished Task as protobuf JSON: the generated Go client in thirty lines.
//
//	go run ./cmd/runtask -address 127.0.0.1:50051 -service echo -input '{"arg1": "hello"}'
//
// With -stream it creates the task and prints its events, one JSON object a line,
// instead. A failed call prints {"code": "NOT_FOUND", "message": ...} and exits 1.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	_ "google.golang.org/genproto/googleapis/rpc/errdetails" // task errors carry an ErrorInfo
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	meshv1 "github.com/llama-mesh/llama-mesh/clients/go/gen/llama_mesh/v1"
)

func main() {
	address := flag.String("address", "127.0.0.1:50051", "control plane host:port")
	service := flag.String("service", "echo", "service to run")
	input := flag.String("input", "{}", "task input, a JSON object")
	stream := flag.Bool("stream", false, "print the task's events instead of the finished task")
	timeout := flag.Duration("timeout", time.Minute, "deadline of the whole run")
	token := flag.String("token", os.Getenv("LLAMA_MESH_TOKEN"), "API key or JWT (default: $LLAMA_MESH_TOKEN)")
	flag.Parse()
	if err := run(*address, *service, *input, *stream, *timeout, *token); err != nil {
		code := status.Code(err)
		out, _ := json.Marshal(map[string]string{
			"code":    codeName(code.String()),
			"message": status.Convert(err).Message(),
		})
		fmt.Println(string(out))
		os.Exit(1)
	}
}

func run(address, service, input string, stream bool, timeout time.Duration, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	defer cancel()
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := meshv1.NewControlPlaneAPIClient(conn)

	args := &structpb.Struct{}
	if err := protojson.Unmarshal([]byte(input), args); err != nil {
		return status.Errorf(3, "-input is not a JSON object: %v", err) // INVALID_ARGUMENT
	}
	session, err := client.CreateSession(ctx, &meshv1.CreateSessionRequest{})
	if err != nil {
		return err
	}
	task := &meshv1.Task{Service: service, Input: args}
	parent := session.GetSession().GetName()
	if !stream {
		done, err := client.RunTask(ctx, &meshv1.RunTaskRequest{Parent: parent, Task: task})
		if err != nil {
			return err
		}
		return printJSON(done.GetTask(), true)
	}
	created, err := client.CreateTask(ctx, &meshv1.CreateTaskRequest{Parent: parent, Task: task})
	if err != nil {
		return err
	}
	events, err := client.StreamTaskEvents(ctx, &meshv1.StreamTaskEventsRequest{Name: created.GetTask().GetName()})
	if err != nil {
		return err
	}
	for {
		item, err := events.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := printJSON(item.GetEvent(), false); err != nil {
			return err
		}
	}
}

// printJSON prints m as protobuf JSON, indented or on one line. protojson varies its
// whitespace from build to build on purpose; encoding/json's Indent and Compact print
// the same bytes every time, so the output can be compared (docs/clients.md is).
func printJSON(m proto.Message, indent bool) error {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if indent {
		err = json.Indent(&out, raw, "", "  ")
	} else {
		err = json.Compact(&out, raw)
	}
	if err != nil {
		return err
	}
	fmt.Println(out.String())
	return nil
}

// codeName turns a code's Go name ("NotFound") into its gRPC name ("NOT_FOUND").
func codeName(goName string) string {
	if goName == "Canceled" {
		return "CANCELLED"
	}
	var b strings.Builder
	for i, r := range goName {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
