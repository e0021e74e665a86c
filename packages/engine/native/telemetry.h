// Access log lines and spans of the calls the engine carries (packages/router/src/telemetry.ts is the contract).
#pragma once

namespace meshport {}  // namespace meshport
