"""The upstream of gwtest/v1/compat.proto: turns and responses that echo their input.

Each turn answers `ECHO: <text>`, streamed as four text deltas; each response the
same as output text. Special ids trigger the errors the proto comments name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import any_pb2, struct_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

TURN_SERVICE = "gwtest.v1.TurnService"
RESPONSE_SERVICE = "gwtest.v1.ResponseService"
STARTED = timestamp_pb2.Timestamp(seconds=1_796_036_340, nanos=896_609_000)
COMPLETED = timestamp_pb2.Timestamp(seconds=1_796_036_341, nanos=28_799_000)


def _status(code: int, message: str, *details: Any) -> grpc.Status:
    status = status_pb2.Status(code=code, message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return rpc_status.to_status(status)


def _pieces(text: str, n: int = 4) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


class CompatServicer:
    """Handlers for TurnService and ResponseService."""

    def __init__(self, pb2: ModuleType) -> None:
        self.pb2 = pb2

    # -- turns -------------------------------------------------------------------

    def _answer(self, request: Any) -> str:
        return "ECHO: " + " ".join(m.content for m in request.messages)

    def _turn(self, request: Any, turn_id: str = "turn-1") -> Any:
        pb2 = self.pb2
        output = pb2.CompletionMessage(
            role=pb2.ROLE_ASSISTANT,
            content=self._answer(request),
            stop_reason=pb2.STOP_REASON_END_OF_TURN,
        )
        step = pb2.Step(
            turn_id=turn_id,
            step_id="step-1",
            started_at=STARTED,
            completed_at=COMPLETED,
            inference=pb2.InferenceStep(model_response=output),
        )
        return pb2.Turn(
            turn_id=turn_id,
            session_id=request.session_id,
            input_messages=request.messages,
            steps=[step],
            output_message=output,
            started_at=STARTED,
            completed_at=COMPLETED,
        )

    async def _check_turn(self, request: Any, context: Any) -> None:
        if request.agent_id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "agent missing not found")
        if any(not m.content for m in request.messages):
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field="messages", description="a message is empty"
                    )
                ]
            )
            await context.abort_with_status(
                _status(code_pb2.INVALID_ARGUMENT, "messages: a message is empty", bad)
            )

    async def create_turn(self, request: Any, context: Any) -> Any:
        await self._check_turn(request, context)
        return self._turn(request)

    async def stream_turn(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self._check_turn(request, context)
        pb2 = self.pb2
        inference = pb2.STEP_TYPE_INFERENCE

        def chunk(**payload: Any) -> Any:
            return pb2.TurnStreamChunk(event=pb2.TurnEvent(payload=pb2.TurnEventPayload(**payload)))

        yield chunk(step_start=pb2.StepStartPayload(step_type=inference, step_id="step-1"))
        if request.agent_id == "fails-midway":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "model 'nope' not found")
        for piece in _pieces(self._answer(request)):
            delta = pb2.Delta(text=pb2.TextDelta(text=piece))
            yield chunk(
                step_progress=pb2.StepProgressPayload(
                    step_type=inference, step_id="step-1", delta=delta
                )
            )
        turn = self._turn(request)
        yield chunk(
            step_complete=pb2.StepCompletePayload(
                step_type=inference, step_id="step-1", step_details=turn.steps[0]
            )
        )
        yield chunk(turn_complete=pb2.TurnCompletePayload(turn=turn))

    async def get_session(self, request: Any, context: Any) -> Any:
        pb2 = self.pb2
        turns = [
            self._turn(pb2.CreateTurnRequest(session_id=request.session_id), turn_id=t)
            for t in request.turn_ids
        ]
        return pb2.Session(
            session_id=request.session_id, session_name="s", turns=turns, started_at=STARTED
        )

    # -- responses -----------------------------------------------------------------

    def _text(self, request: Any) -> str:
        value = request.input
        return "ECHO: " + (value.string_value if value.HasField("string_value") else "items")

    def _response(self, request: Any, *, done: bool) -> Any:
        pb2 = self.pb2
        out = pb2.ResponseObject(
            id="resp-1",
            object="response",
            created_at=1_796_036_340,
            model=request.model,
            status="completed" if done else "in_progress",
            tool_choice="auto",
        )
        if request.HasField("previous_response_id"):
            out.previous_response_id = request.previous_response_id
        if done:
            message = pb2.OutputMessage(
                id="msg_1",
                role=pb2.ROLE_ASSISTANT,
                status="completed",
                content=[pb2.OutputContent(output_text=pb2.OutputText(text=self._text(request)))],
            )
            out.output.append(pb2.OutputItem(message=message))
        return out

    async def _check_response(self, request: Any, context: Any) -> None:
        if request.model == "invalid":
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field="model", description="empty")
                ]
            )
            await context.abort_with_status(
                _status(code_pb2.INVALID_ARGUMENT, "model is required", bad)
            )

    async def create_response(self, request: Any, context: Any) -> Any:
        await self._check_response(request, context)
        return self._response(request, done=True)

    async def stream_response(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self._check_response(request, context)
        pb2 = self.pb2
        yield pb2.ResponseStreamEvent(
            created=pb2.ResponseCreatedEvent(
                response=self._response(request, done=False), sequence_number=0
            )
        )
        if request.model == "fails-midway":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "model 'fails-midway' broke")
        n = 0
        for n, piece in enumerate(_pieces(self._text(request)), start=1):
            yield pb2.ResponseStreamEvent(
                output_text_delta=pb2.OutputTextDeltaEvent(
                    item_id="msg_1", delta=piece, sequence_number=n
                )
            )
        yield pb2.ResponseStreamEvent(
            completed=pb2.ResponseCompletedEvent(
                response=self._response(request, done=True), sequence_number=n + 1
            )
        )

    async def get_response(self, request: Any, context: Any) -> Any:
        if request.response_id == "missing":
            info = error_details_pb2.ErrorInfo(reason="RESPONSE_NOT_FOUND", domain="gwtest")
            await context.abort_with_status(
                _status(code_pb2.NOT_FOUND, f"response {request.response_id} not found", info)
            )
        return self._response(self.pb2.CreateResponseRequest(model="m"), done=True)

    async def list_input_items(self, request: Any, context: Any) -> Any:
        pb2 = self.pb2
        order = pb2.Order.Name(request.order)
        limit = request.limit if request.HasField("limit") else None
        echo = f"after={request.after} limit={limit} order={order} include={list(request.include)}"
        item = struct_pb2.Struct()
        item.update(
            {
                "id": "msg_in",
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_text", "text": echo}],
            }
        )
        return pb2.InputItemList(
            data=[item], object="list", first_id="msg_in", last_id="msg_in", has_more=False
        )

    # -- wiring --------------------------------------------------------------------

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        pb2 = self.pb2

        def unary(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
            )

        def stream(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_stream_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
            )

        turns = {
            "CreateTurn": unary(self.create_turn, pb2.CreateTurnRequest, pb2.Turn),
            "StreamTurn": stream(self.stream_turn, pb2.CreateTurnRequest, pb2.TurnStreamChunk),
            "GetSession": unary(self.get_session, pb2.GetSessionRequest, pb2.Session),
        }
        responses = {
            "CreateResponse": unary(
                self.create_response, pb2.CreateResponseRequest, pb2.ResponseObject
            ),
            "StreamResponse": stream(
                self.stream_response, pb2.CreateResponseRequest, pb2.ResponseStreamEvent
            ),
            "GetResponse": unary(self.get_response, pb2.GetResponseRequest, pb2.ResponseObject),
            "ListInputItems": unary(
                self.list_input_items, pb2.ListInputItemsRequest, pb2.InputItemList
            ),
        }
        return [
            grpc.method_handlers_generic_handler(TURN_SERVICE, turns),
            grpc.method_handlers_generic_handler(RESPONSE_SERVICE, responses),
        ]
