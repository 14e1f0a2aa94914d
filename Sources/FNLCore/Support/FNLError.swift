/// The one error type of the engine. The ABI layer maps each case to a status code
/// (and the Python extension to an exception class): `.invalid` -> ValueError,
/// `.outOfMemory` -> MemoryError, `.numerical` -> RuntimeError.
/// Messages name the argument, what was expected and what was received; the ABI
/// caller prefixes the public function name.
public enum FNLError: Error, Equatable, CustomStringConvertible {
    case invalid(String)
    case outOfMemory(String)
    case numerical(String)

    public var message: String {
        switch self {
        case .invalid(let m), .outOfMemory(let m), .numerical(let m): return m
        }
    }

    public var description: String { message }
}

/// Throws `.invalid(message())` unless `condition` holds.
@inline(__always)
public func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw FNLError.invalid(message()) }
}
