@echo off
rem Atelier launcher for Windows. Put your flags in webui-user.bat (set COMMANDLINE_ARGS=...) and run that,
rem or run: webui.bat --api --listen
rem First run: creates the virtual environment venv\ and installs Atelier into it (pip install -e .);
rem it reinstalls when pyproject.toml is newer than the last install. Atelier reads COMMANDLINE_ARGS itself.
setlocal
cd /d "%~dp0"

if not defined PYTHON (set PYTHON=python)
if not defined VENV_DIR (set "VENV_DIR=%~dp0venv")
set GRADIO_ANALYTICS_ENABLED=False
if not defined HF_HUB_OFFLINE (set HF_HUB_OFFLINE=1)

if "%VENV_DIR%"=="-" (
    set "PY=%PYTHON%"
    goto :launch
)

if not exist "%VENV_DIR%\Scripts\python.exe" (
    echo Creating the virtual environment in %VENV_DIR% ...
    %PYTHON% -m venv "%VENV_DIR%"
    if errorlevel 1 goto :error
)
set "PY=%VENV_DIR%\Scripts\python.exe"
set "STAMP=%VENV_DIR%\.atelier-app-installed"

"%PY%" -c "import os,sys; s=sys.argv[1]; sys.exit(0 if os.path.exists(s) and os.path.getmtime(s) >= os.path.getmtime('pyproject.toml') else 1)" "%STAMP%"
if not errorlevel 1 goto :launch

echo Installing Atelier and its packages into %VENV_DIR% (first run or updated pyproject.toml) ...
"%PY%" -m pip install --upgrade pip
if errorlevel 1 goto :error
if defined TORCH_COMMAND (
    "%PY%" -m %TORCH_COMMAND%
    if errorlevel 1 goto :error
)
"%PY%" -m pip install -e .
if errorlevel 1 goto :error
type nul > "%STAMP%"

:launch
"%PY%" -m app %*
exit /b %errorlevel%

:error
echo.
echo Launch unsuccessful. Exiting.
pause
exit /b 1
