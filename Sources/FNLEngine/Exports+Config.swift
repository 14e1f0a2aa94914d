import CBLAS
import FNLCore

/// ABI version; must equal FNL_ABI_VERSION in fnl_engine.h.
let abiVersion: Int32 = 1

@_cdecl("fnl_abi_version")
public func fnl_abi_version() -> Int32 { abiVersion }

@_cdecl("fnl_set_num_threads")
public func fnl_set_num_threads(_ n: Int64, _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) { try Threads.set(Int(clamping: n)) }
}

@_cdecl("fnl_get_num_threads")
public func fnl_get_num_threads() -> Int64 { Int64(Threads.count) }

@_cdecl("fnl_blas_info")
public func fnl_blas_info(_ config: UnsafeMutablePointer<CChar>?, _ configCap: Int,
                          _ core: UnsafeMutablePointer<CChar>?, _ coreCap: Int) -> Int32 {
    writeMessage(openblas_get_config().map { String(cString: $0) } ?? "unknown", config, configCap)
    writeMessage(openblas_get_corename().map { String(cString: $0) } ?? "unknown", core, coreCap)
    return Status.ok
}
