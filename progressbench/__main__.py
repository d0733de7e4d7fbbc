from progressbench.cli import main

main()
