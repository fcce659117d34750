using System.Runtime.InteropServices;
using System.Text;

namespace Orchestrator.Runtime.Spawn;

/// <summary>
/// Native memory for one spawn plan: every string and array the C shim reads. Freed as one
/// after clone returns (the child has its own copy of the pages by then).
/// </summary>
internal sealed unsafe class NativeArena : IDisposable
{
    private readonly List<nint> _blocks = [];

    public T* Alloc<T>(int count) where T : unmanaged
    {
        var p = NativeMemory.AllocZeroed((nuint)Math.Max(1, count), (nuint)sizeof(T));
        _blocks.Add((nint)p);
        return (T*)p;
    }

    public byte* String(string? value)
    {
        if (value is null)
        {
            return null;
        }
        var bytes = Encoding.UTF8.GetByteCount(value);
        var p = Alloc<byte>(bytes + 1);
        Encoding.UTF8.GetBytes(value, new Span<byte>(p, bytes));
        return p;
    }

    /// <summary>A NULL-terminated array of strings (argv, envp).</summary>
    public byte** Strings(IReadOnlyList<string> values)
    {
        var array = Alloc<nint>(values.Count + 1);
        for (var i = 0; i < values.Count; i++)
        {
            array[i] = (nint)String(values[i]);
        }
        return (byte**)array;
    }

    public void Dispose()
    {
        foreach (var block in _blocks)
        {
            NativeMemory.Free((void*)block);
        }
        _blocks.Clear();
    }
}
