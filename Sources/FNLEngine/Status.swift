import FNLCore

/// Status codes of the ABI (fnl_engine.h).
enum Status {
    static let ok: Int32 = 0
    static let value: Int32 = 1
    static let memory: Int32 = 2
    static let numeric: Int32 = 3
}

/// Runs `body`, mapping a thrown `FNLError` to its status code and copying its message
/// (truncated, NUL-terminated) into the caller's buffer. Every export goes through here.
@inline(__always)
func abiCall(_ err: UnsafeMutablePointer<CChar>?, _ cap: Int, _ body: () throws -> Void) -> Int32 {
    do {
        try body()
        return Status.ok
    } catch let e as FNLError {
        writeMessage(e.message, err, cap)
        switch e {
        case .invalid: return Status.value
        case .outOfMemory: return Status.memory
        case .numerical: return Status.numeric
        }
    } catch {
        writeMessage("unexpected engine error: \(error)", err, cap)
        return Status.numeric
    }
}

/// Copies `message` into `err[0..<cap]` as UTF-8, always NUL-terminated when cap > 0.
func writeMessage(_ message: String, _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) {
    guard let err, cap > 0 else { return }
    var n = 0
    for byte in message.utf8 where n < cap - 1 {
        err[n] = CChar(bitPattern: byte)
        n += 1
    }
    err[n] = 0
}

/// Checks that a pointer argument is non-null.
func nonNull<T>(_ p: UnsafePointer<T>?, _ name: String) throws -> UnsafePointer<T> {
    guard let p else { throw FNLError.invalid("\(name) is a null pointer") }
    return p
}

func nonNull<T>(_ p: UnsafeMutablePointer<T>?, _ name: String) throws -> UnsafeMutablePointer<T> {
    guard let p else { throw FNLError.invalid("\(name) is a null pointer") }
    return p
}

/// Reads `count` non-null pointers from a C array of pointers named `name` (which may be null
/// when `count` is 0). Messages are formatted only on failure: string interpolation per
/// pointer would dominate optimizer steps over many small tensors.
func pointerList<P>(_ array: UnsafePointer<P?>?, _ count: Int, _ name: String) throws -> [P] {
    if count == 0 { return [] }
    let array = try nonNull(array, name)
    var out: [P] = []
    out.reserveCapacity(count)
    for i in 0..<count {
        guard let p = array[i] else { throw FNLError.invalid("\(name)[\(i)] is a null pointer") }
        out.append(p)
    }
    return out
}

/// Converts an int64 size argument to Int, rejecting negatives.
func size(_ x: Int64, _ name: String) throws -> Int {
    guard x >= 0 else { throw FNLError.invalid("\(name) must be >= 0, got \(x)") }
    return Int(x)
}
