// LangChain JS's own code on stored elements, for tests/test_writer_compat.py. Reads JSON on stdin:
//   {"make": [{"kind": "human", "fields": {...}}, ...]}  -> the elements LangChain JS stores for these messages
//   {"read": ["<element>", ...]}                         -> what its reader makes of each stored element
// and writes the answer as JSON on stdout.
import {
  AIMessage,
  HumanMessage,
  SystemMessage,
  ToolMessage,
  mapChatMessagesToStoredMessages,
  mapStoredMessagesToChatMessages,
} from "@langchain/core/messages";

const kinds = { human: HumanMessage, ai: AIMessage, system: SystemMessage, tool: ToolMessage };

function make(specs) {
  const messages = specs.map(({ kind, fields }) => new kinds[kind](fields));
  // As UpstashRedisChatMessageHistory.addMessage stores one: JSON.stringify of the stored message.
  return mapChatMessagesToStoredMessages(messages).map((stored) => JSON.stringify(stored));
}

function read(elements) {
  return elements.map((element) => {
    try {
      const [message] = mapStoredMessagesToChatMessages([JSON.parse(element)]);
      return {
        type: message._getType(),
        content: message.content,
        tool_calls: message.tool_calls ?? null,
        tool_call_id: message.tool_call_id ?? null,
        name: message.name ?? null,
      };
    } catch (error) {
      return { error: String(error) };
    }
  });
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const request = JSON.parse(input);
  process.stdout.write(JSON.stringify(request.make ? make(request.make) : read(request.read)));
});
